"""Who may talk to the local web app: a Host naming this server, and no cross-site requests that change anything.

The app listens on 127.0.0.1 by default, but a browser tab on any web site can still reach it: a page can post
a form or a ``fetch`` to ``http://127.0.0.1:8765`` (cross-site request forgery), and a site whose DNS name is
re-pointed at 127.0.0.1 after the page loaded (DNS rebinding) even reads the answers, because to the browser
it is the same origin. Two checks close both, before any route runs:

- ``Host`` must name this server: ``localhost``, ``127.0.0.1``, ``[::1]``, the address it is bound to, or a name
  given to :func:`rainier.web.create_app`, with the port it listens on. A rebound name (``evil.example``) is
  answered 403. An IP address cannot be rebound, so a server bound to every interface (``0.0.0.0``) also
  accepts any address literal and this machine's host name.
- A request that is not ``GET``/``HEAD``/``OPTIONS`` with an ``Origin`` header must come from the app's own
  origin (the scheme, host and port it was reached at); browsers send ``Origin`` on every cross-origin request
  that can change state, so a post from another site (or a sandboxed page, ``Origin: null``) is answered 403.
  Clients that are not browsers send no ``Origin`` and are not affected.

The JSON routes also refuse the content types a cross-site page may post without a CORS preflight
(``text/plain``; :mod:`rainier.web.limits`), so forged requests fail even where ``Origin`` is missing.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from rainier.errors import quote

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})  # a bind to every interface
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True, kw_only=True)
class HostPolicy:
    """The host names a request's ``Host`` may give (lower case, IPv6 without brackets)."""

    names: frozenset[str]
    any_address: bool = False  # any IP address literal (a server bound to every interface)

    @classmethod
    def for_bind(cls, bind_host: str, allowed_hosts: Iterable[str] = ()) -> HostPolicy:
        """The names of a server bound to ``bind_host``, plus ``allowed_hosts`` (names it is reached by)."""
        bound = _bare(bind_host)
        names = set(LOOPBACK_NAMES) | {_bare(name) for name in allowed_hosts}
        wildcard = bound in WILDCARD_ADDRESSES
        if wildcard:
            names.add(socket.gethostname().lower())
        else:
            names.add(bound)
        return cls(names=frozenset(names), any_address=wildcard)

    def accepts(self, name: str) -> bool:
        if name in self.names:
            return True
        return self.any_address and _is_address(name)


class LocalOnly:
    """ASGI middleware: the Host and Origin checks of the module docstring, answered 403 with one line."""

    def __init__(self, app: ASGIApp, *, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = self.problem(scope)
            if problem is not None:
                await JSONResponse({"error": problem, "field": None}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def problem(self, scope: Scope) -> str | None:
        """Why the request is refused, or ``None``."""
        headers = Headers(scope=scope)
        scheme = str(scope.get("scheme", "http"))
        host = headers.get("host")
        if host is None:
            return "forbidden: no Host header (this app answers requests for its own address only)"
        try:
            name, port = split_host(host, DEFAULT_PORTS.get(scheme, 80))
        except ValueError:
            return f"forbidden: Host {quote(host)} is malformed"
        server = scope.get("server")
        server_port = server[1] if server and server[1] is not None else None
        if not self.policy.accepts(name) or (server_port is not None and port != server_port):
            return (
                f"forbidden: Host {quote(host)} is not this app's address (a defence against DNS rebinding); "
                "open it at http://localhost or 127.0.0.1 and its port"
            )
        origin = headers.get("origin")
        unsafe = scope.get("method", "GET") not in SAFE_METHODS
        if unsafe and origin is not None and not _same_origin(origin, scheme, name, port):
            return f"forbidden: cross-origin request from {quote(origin)} (only this app's own page may post)"
        return None


def split_host(host: str, default_port: int) -> tuple[str, int]:
    """``(name, port)`` of a ``Host`` value (``name``, ``name:port``, ``[::1]:port``); ValueError if malformed."""
    text = host.strip().lower()
    if text.startswith("["):
        name, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(host)
        port_text = rest[1:]
        ipaddress.IPv6Address(name)  # brackets hold an IPv6 address only
    else:
        name, _, port_text = text.partition(":")
        if ":" in port_text:
            raise ValueError(host)
    if not name:
        raise ValueError(host)
    if not port_text:
        return name, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(host)
    return name, int(port_text)


def _same_origin(origin: str, scheme: str, name: str, port: int) -> bool:
    try:
        parts = urlsplit(origin.strip().lower())
        origin_port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return False
    return parts.scheme == scheme and parts.hostname == name and origin_port == port


def _bare(host: str) -> str:
    return host.strip().lower().removeprefix("[").removesuffix("]")


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
