"""pushwire: real-time server push and instant messaging for Python."""

from .app import App
from .asgiapp import AsgiApp
from .config import Config
from .core import ConnectRequest, Hub, Identity, Session
from .embed import Server, asgi
from .errors import (
    BadRequest,
    Forbidden,
    InvalidState,
    LocalError,
    PushwireError,
    RemoteError,
)
from .message import Message, Position
from .serve import run, serve
from .version import __version__

__all__ = [
    "App",
    "AsgiApp",
    "BadRequest",
    "Config",
    "ConnectRequest",
    "Forbidden",
    "Hub",
    "Identity",
    "InvalidState",
    "LocalError",
    "Message",
    "Position",
    "PushwireError",
    "RemoteError",
    "Server",
    "Session",
    "__version__",
    "asgi",
    "run",
    "serve",
]
