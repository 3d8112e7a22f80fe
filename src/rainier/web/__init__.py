"""``rainier web``: a local web app over the Python API: a training step, a fleet run, a serving fleet.

``create_app()`` builds the FastAPI application, ``serve(host, port)`` runs it with uvicorn (bound to
127.0.0.1 by default). The page shows the same numbers as ``rainier train estimate --json`` and
``rainier train search --json`` for a training scenario, ``rainier fleet scenario --json`` for a fleet one and
``rainier report --json`` for a serving one (:mod:`rainier.web.questions`); scenario files of every kind upload
through the one loader (:mod:`rainier.api.scenario`), and each tab downloads its scenario as YAML.
Only this machine's own page may use it (:mod:`rainier.web.guard`: Host and Origin checks against DNS
rebinding and cross-site posts), and each request has a body limit, a time budget and a share of a few worker
threads (:mod:`rainier.web.limits`).
"""

from rainier.web.app import DEFAULT_HOST, DEFAULT_PORT, create_app, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "create_app", "serve"]
