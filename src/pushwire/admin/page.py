"""The admin page: `/admin` (off unless `Config.admin`; docs/operations.md "Admin page").

- `GET /admin`: the page, a login form then the dashboard (no figure in it: they come over
  pushwire);
- `GET /admin/admin.js`, `/admin/admin.css`: its script and style (no file from elsewhere);
- `POST /admin/session` with `Authorization: Bearer <API key or admin JWT>`: an admin token
  for the stats channel.

The page holds no figure and no secret: what it shows comes from the stats channel
(`pushwire.admin.figures`), which only an admin session may subscribe to. `POST
/admin/session` answers 401 without a credential or with a wrong one, and 403 when the
server has neither an API key nor JWT keys (nobody could log in). Its answer:
`{"token", "expires", "channel", "interval", "publish"}`: an admin token (`auth.admin`) for
the API key, or the admin JWT itself; `publish` says whether the page may publish (through
`/api/publish`, with the key: an admin JWT is not the API key).

The key travels only in the `Authorization` header: never in a URL, and pushwire logs no
header value. The page keeps it in the tab's `sessionStorage` (gone with the tab, or at "Log
out") and connects with transports that send their `hello` in a body (WebSocket, stream,
long-poll, polling), so the admin token is in no URL either.
"""

from __future__ import annotations

import hmac
import importlib.resources
import logging
from typing import Final

import orjson

from ..auth.admin import STATS_CHANNEL
from ..config import Config
from ..core import Hub
from ..errors import Forbidden, MethodNotAllowed, NotFound, Unauthorized
from ..web import Request, Response

__all__ = ["AdminPage"]

logger = logging.getLogger("pushwire.admin")

_FILES: Final = {
    "/admin": ("admin.html", "text/html; charset=utf-8"),
    "/admin/admin.js": ("admin.js", "text/javascript; charset=utf-8"),
    "/admin/admin.css": ("admin.css", "text/css; charset=utf-8"),
}
#: The page loads nothing from elsewhere, and no other site may frame it.
_HEADERS: Final = (
    ("Cache-Control", "no-store"),
    (
        "Content-Security-Policy",
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
)


def _load() -> dict[str, bytes]:
    root = importlib.resources.files("pushwire") / "static" / "admin"
    return {name: (root / name).read_bytes() for name, _ in _FILES.values()}


class AdminPage:
    """Answers `/admin` and everything under it (see the module docstring)."""

    def __init__(self, hub: Hub, config: Config) -> None:
        self.hub = hub
        self.config = config
        self._files = _load() if config.admin else {}
        if config.admin and config.api_key is None and hub.access.tokens is None:
            logger.warning("the admin page is on but nobody can log in to it: give --api-key")

    def handle(self, request: Request) -> Response:
        """Answer a request for `/admin` or a path under it.

        Raises:
            NotFound: the page is off, or no such path.
            MethodNotAllowed: a method the path does not take.
            Unauthorized: `POST /admin/session` without the API key or an admin JWT.
            Forbidden: nobody can log in (no API key, no JWT keys).
        """
        path = request.path
        if not self.config.admin:
            raise NotFound(f"no such path {path}")
        if path == "/admin/session":
            if request.method != "POST":
                raise MethodNotAllowed(f"{path} takes POST, not {request.method}", "POST")
            return self._session(request)
        found = _FILES.get(path)
        if found is None:
            raise NotFound(f"no such path {path}")
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{path} takes GET, not {request.method}")
        name, content_type = found
        return Response(200, self._files[name], content_type=content_type, headers=_HEADERS)

    def _session(self, request: Request) -> Response:
        access = self.hub.access
        try:
            answer = self._credential(request)
        except (Unauthorized, Forbidden) as exc:
            access.refusals.refused("the admin page", exc, request.remote)
            raise
        answer["channel"] = STATS_CHANNEL
        answer["interval"] = self.config.admin_interval
        return Response(
            200,
            orjson.dumps(answer),
            content_type="application/json",
            headers=[("Cache-Control", "no-store")],
        )

    def _credential(self, request: Request) -> dict[str, object]:
        """What the request's credential gives: an admin token for the API key, the admin
        JWT itself for one."""
        key, tokens, admin = self.config.api_key, self.hub.access.tokens, self.hub.access.admin
        if key is None and tokens is None:
            raise Forbidden("the admin page needs an API key (--api-key) or JWT keys")
        given = _bearer(request)
        if given is None:
            raise Unauthorized("the admin page needs the API key (Authorization: Bearer <key>)")
        if (
            admin is not None
            and key is not None
            and hmac.compare_digest(given.encode(), key.encode())
        ):
            token, expires = admin.issue()
            return {"token": token, "expires": expires, "publish": True}
        if tokens is not None and given.count(".") == 2:
            claims = tokens.connection(given)  # Unauthorized, TokenExpired: refused
            if claims.admin:
                return {"token": given, "expires": claims.expires, "publish": False}
            raise Unauthorized('the token is no admin\'s (its claims lack "admin": true)')
        raise Unauthorized("wrong API key")


def _bearer(request: Request) -> str | None:
    value = request.header("authorization")
    if value is None:
        return None
    scheme, _, credential = value.partition(" ")
    return credential.strip() or None if scheme.lower() == "bearer" else None
