"""``rainier web``: a local web app over the Python API (model, cluster, plan or search -> the report, live).

``create_app()`` builds the FastAPI application, ``serve(host, port)`` runs it with uvicorn (bound to
127.0.0.1 by default). The page shows the same numbers as ``rainier train estimate --json`` and
``rainier train search --json`` for the same scenario; scenarios download and upload as YAML
(:mod:`rainier.web.scenario`). Only this machine's own page may use it (:mod:`rainier.web.guard`: Host and
Origin checks against DNS rebinding and cross-site posts), and each request has a body limit, a time budget and
a share of a few worker threads (:mod:`rainier.web.limits`).
"""

from rainier.web.app import DEFAULT_HOST, DEFAULT_PORT, create_app, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "create_app", "serve"]
