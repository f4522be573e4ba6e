"""What a channel name may be: one check for every door (`pushwire.core.identity` exports it)."""

from __future__ import annotations

import re
from typing import Final

from ..errors import BadRequest
from ..parsing import quoted

__all__ = ["check_channel"]

_CHANNEL_NAME: Final = re.compile(r"[A-Za-z0-9_\-.:@#$,]+")


def check_channel(channel: object, max_length: int) -> str:
    """The channel name if valid: 1 to `max_length` characters of `[A-Za-z0-9_-.:@#$,]`.

    Raises:
        BadRequest: anything else.
    """
    if (
        not isinstance(channel, str)
        or not 0 < len(channel) <= max_length
        or not _CHANNEL_NAME.fullmatch(channel)
    ):
        raise BadRequest(f"invalid channel name {quoted(channel)}")
    return channel
