"""What a client's messages mean at an endpoint, in raw mode and in pushwire.v1 (see base.py)."""

from .base import ClientInfo, Endpoint, raw_connect_request, token_of, write_recovery
from .raw import RawHandler
from .v1 import EnvelopeHandler

__all__ = [
    "ClientInfo",
    "Endpoint",
    "EnvelopeHandler",
    "RawHandler",
    "raw_connect_request",
    "token_of",
    "write_recovery",
]
