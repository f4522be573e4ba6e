"""The WebSocket endpoints an app keeps by path stay bounded."""

from __future__ import annotations

import pytest

from pushwire.app import _WS_PATHS, App
from pushwire.errors import BadRequest, NotFound


def test_the_endpoints_kept_by_path_are_bounded() -> None:
    app = App()
    for index in range(_WS_PATHS + 100):
        assert app._ws_endpoint(f"/ws/room{index}").channel == f"room{index}"
    assert 0 < len(app._ws_paths) <= _WS_PATHS
    assert "/ws/room" + str(_WS_PATHS + 99) in app._ws_paths


def test_a_refused_path_is_not_kept() -> None:
    app = App()
    with pytest.raises(NotFound):
        app._ws_endpoint("/nowhere")
    with pytest.raises(BadRequest):
        app._ws_endpoint("/ws/bad name")
    assert app._ws_paths == {}
