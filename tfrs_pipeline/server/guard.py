"""What every answer of the server carries, and which requests it will not answer.

* **Security headers** on every answer: ``X-Content-Type-Options: nosniff``, ``X-Frame-Options:
  DENY`` and a ``Content-Security-Policy`` that lets the page run its own inline script and
  style (by their SHA-256) and nothing else, fetch only from this server, and never be framed.
* **Host check**: a request whose ``Host`` header names another host than the server's own is
  refused with 421. A web page on another site the user visits could otherwise point a name it
  controls at 127.0.0.1 (DNS rebinding) and read the answers of a server on the user's machine.
  The server's own names are the address it is bound to and, on a loopback address, ``localhost``,
  ``127.0.0.1`` and ``::1``; ``allowed_hosts`` adds others (a name behind a proxy), ``*`` allows any.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import urllib.parse

#: Names a server bound to a loopback address answers to besides its address.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def allowed_hosts(bound: str, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The host names a server bound to ``bound`` answers to: itself, loopback names on a loopback
    address, and ``extra``; ``["*"]`` (any) where it listens on every address and nothing is added."""
    if bound in ("0.0.0.0", "::", "") and not extra:
        return ["*"]
    names = [bound.lower()]
    try:
        loopback = ipaddress.ip_address(bound).is_loopback
    except ValueError:
        loopback = bound.lower() == "localhost"
    if loopback:
        names += [name for name in LOOPBACK_NAMES if name not in names]
    return names + [name.lower() for name in extra if name.lower() not in names]


def content_security_policy(page: bytes) -> str:
    """The policy of every answer: the page's own inline ``<script>`` and ``<style>`` (by hash), nothing else."""
    text = page.decode("utf-8")

    def hashes(tag: str) -> str:
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
                        for body in re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL))

    return (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; connect-src 'self'; "
            "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class Guard:
    """ASGI middleware: the host check and the security headers (see the module's docstring).

    Args:
        app: the application it wraps.
        hosts: host names answered (:func:`allowed_hosts`); ``*`` answers any.
        policy: the ``Content-Security-Policy`` of every answer.
    """

    def __init__(self, app, hosts: list[str], policy: str) -> None:
        self.app = app
        self.any_host = "*" in hosts
        self.hosts = {host.lower() for host in hosts}
        self.headers = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                        (b"content-security-policy", policy.encode()), (b"referrer-policy", b"no-referrer")]

    def _host_allowed(self, scope) -> bool:
        if self.any_host:
            return True
        header = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        try:
            name = urllib.parse.urlsplit(f"//{header}").hostname if header else None
        except ValueError:  # "[::1" and the like
            return False
        return name is not None and name.lower() in self.hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        if not self._host_allowed(scope):
            body = (b'{"error": "this server does not answer requests for that Host; start it with --allowed-hosts '
                    b'naming the host, if it is yours"}')
            await with_headers({"type": "http.response.start", "status": 421,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, with_headers)
