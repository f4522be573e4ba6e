"""What a client sent, read with bounds: its numbers, and how an error quotes it. Pure.

Every number a client writes as text (a poll `cursor`, a `Last-Event-ID` offset, a
Content-Length) is read by `decimal`: ASCII digits only (`str.isdigit` takes "²" and other
digits `int` refuses), at most as many as the largest value has, at most that value. Anything
else is `BadRequest`, answered 400 / `bad_request`; never a `ValueError` in a protocol
callback, and never a 4,300-digit conversion.

An error that shows what the client sent shows at most `QUOTED` characters of it (`quoted`),
and no error message is longer than `errors.MAX_MESSAGE` characters.
"""

from __future__ import annotations

from typing import Final

from .errors import BadRequest

__all__ = ["MAX_ID_NUMBER", "MAX_POSITION", "QUOTED", "decimal", "echoable_id", "quoted"]

#: The largest channel offset, poll cursor or body length a client may name: Redis counts
#: offsets in 64-bit signed integers, and nothing here gets near it.
MAX_POSITION: Final = 2**63 - 1
#: Characters of a client's value shown in an error message.
QUOTED: Final = 40


def quoted(value: object) -> str:
    """`value` as an error message shows it: a string's `repr`, cut to its first `QUOTED`
    characters and at most `2 * QUOTED` characters of `repr` (the cut is marked with `…` and
    the full length); of anything else, its type."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    shown = repr(value[:QUOTED])
    if len(value) <= QUOTED and len(shown) <= 2 * QUOTED:
        return shown
    return f"{shown[: 2 * QUOTED]}… ({len(value)} characters)"


def decimal(text: str, what: str, maximum: int = MAX_POSITION) -> int:
    """`text` as a whole number from 0 to `maximum`, written in ASCII digits only.

    `what` names the value in the error message (`"cursor"`, `"Last-Event-ID offset"`).

    Raises:
        BadRequest: empty, a character that is not 0-9, more digits than `maximum` has, or
            over `maximum`.
    """
    if not (0 < len(text) <= len(str(maximum)) and text.isascii() and text.isdigit()):
        raise BadRequest(f"invalid {what} {quoted(text)}: a number from 0 to {maximum}")
    value = int(text)
    if value > maximum:
        raise BadRequest(f"{what} {value} is over {maximum}")
    return value


#: The largest request `id` number echoed (JSON numbers are exact up to it in JavaScript).
MAX_ID_NUMBER: Final = 2**53


def echoable_id(request_id: object, limit: int) -> bool:
    """Whether a request `id` is small enough to echo: a string of at most `limit`
    characters, or a number of at most `MAX_ID_NUMBER` in size (not a bool, an object or a
    list, whose size nothing bounds but the frame's)."""
    if isinstance(request_id, str):
        return len(request_id) <= limit
    if isinstance(request_id, int | float) and not isinstance(request_id, bool):
        return -MAX_ID_NUMBER <= request_id <= MAX_ID_NUMBER
    return False
