"""An ASGI scope as a `Request`: the path below the mount point, headers, version."""

from __future__ import annotations

from typing import Any

import pytest

from pushwire.asgiapp.scope import route_path, scope_request


@pytest.mark.parametrize(
    ("path", "root_path", "route"),
    [
        ("/rt/pushwire/sse", "/rt", "/pushwire/sse"),
        ("/rt", "/rt", "/"),
        ("/rtx/echo", "/rt", "/rtx/echo"),  # not below the mount point: as it is
        ("/echo", "", "/echo"),
        ("/echo", "/rt", "/echo"),  # a server that left root_path out of path
    ],
)
def test_the_route_is_the_path_below_root_path(path: str, root_path: str, route: str) -> None:
    assert route_path({"path": path, "root_path": root_path}) == route


def test_a_websocket_scope_is_an_upgrade_get_with_its_headers() -> None:
    scope: dict[str, Any] = {
        "type": "websocket",
        "path": "/rt/ws/room",
        "root_path": "/rt",
        "query_string": b"user=ann&x=%C3%A9",
        "http_version": "2",
        "headers": [(b"Host", b"127.0.0.1"), (b"origin", b"http://localhost")],
        "client": ("127.0.0.1", 5000),
    }
    request = scope_request(scope)
    assert (request.method, request.path, request.version) == ("GET", "/ws/room", "1.1")
    assert request.upgrade
    assert request.header("host") == "127.0.0.1"
    assert request.query_param("x") == "é"
    assert request.remote == "127.0.0.1:5000"


def test_http_1_0_stays_1_0_so_streams_are_refused_as_on_the_native_server() -> None:
    scope = {"type": "http", "method": "GET", "path": "/", "http_version": "1.0"}
    assert scope_request(scope).version == "1.0"
