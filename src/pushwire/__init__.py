"""pushwire: real-time server push and instant messaging for Python."""

from .app import App
from .config import Config
from .errors import (
    BadRequest,
    Forbidden,
    InvalidState,
    LocalError,
    PushwireError,
    RemoteError,
)
from .hub import ConnectRequest, Hub, Identity
from .message import Message, Position
from .serve import run, serve
from .session import Session

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
