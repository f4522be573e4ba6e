"""The ASGI front door: pushwire's app as an ASGI 3 application (`pushwire.asgi(hub)`)."""

from .door import AsgiApp, Lifecycle

__all__ = ["AsgiApp", "Lifecycle"]
