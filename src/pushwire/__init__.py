"""pushwire: real-time server push and instant messaging for Python."""

from .app import App
from .config import Config
from .core import ConnectRequest, Hub, Identity, Session
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

__all__ = [
    "App",
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
    "Session",
    "run",
    "serve",
]

__version__ = "0.1.0"
