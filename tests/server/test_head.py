"""The fast head parser (`pushwire.server.head`) against llhttp, head by head.

For every head of a corpus (hand-written adversarial cases, every byte at every place of a
head, and a seeded generator mutating valid heads), `RequestParser` fed the whole of it (the
fast path may take it) must end exactly as when it is fed the first byte alone and then the
rest (only llhttp parses then: the fast path takes only a whole head from between requests):
the same requests field by field, or the same error; the same state, and the same answer to
a request fed after. And `parse_head` alone must never take a head llhttp refuses, and must
make of one it takes the request llhttp makes. The tests count that it took the valid heads:
without the fast path they fail.
"""

from __future__ import annotations

import random
from dataclasses import astuple

import pytest

from pushwire.errors import RemoteError
from pushwire.server import head as head_module
from pushwire.server.head import parse_head
from pushwire.server.parser import RequestParser
from pushwire.web import Request

MAX_HEADER, MAX_BODY = 4096, 1024
END = b"\r\n\r\n"

#: Answer of a parser to some bytes: the requests as tuples (every field), then either its
#: state or the error ("BadRequest: ...").
Outcome = tuple[list[tuple[object, ...]], tuple[object, ...] | str]

#: A request a client may send after, to compare the state each way left behind.
NEXT = b"GET /next?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"

WEBSOCKET = (
    b"GET /ws/bench?user=user1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
BROWSER = (
    b"GET /ws/room%20one?user=al%C3%AFce&token=a+b#frag HTTP/1.1\r\n"
    b"Host: push.example.com\r\nConnection: keep-alive, Upgrade\r\nPragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\r\n"
    b"Upgrade: websocket\r\nOrigin: https://push.example.com\r\nSec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-GB,en;q=0.9\r\n"
    b'Cookie: a=1; b="two"\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n'
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
)
#: Valid heads the fast path must take (each alone; with what follows, see `test_...`).
VALID = [
    WEBSOCKET,
    BROWSER,
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /poll/room?since=e1:4&user=u HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    b"GET /a?b?c#d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /a#b?c HTTP/1.1\r\nX-Empty:\r\nX-Blank:  \t \r\nY:\tv\t\r\n\r\n",
    b"POST /api/publish/room HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /x HTTP/1.1\r\n\r\n",
    b"OPTIONS /x HTTP/1.1\r\nOrigin: https://a.example\r\n\r\n",
    b"PUT /x HTTP/1.1\r\n\r\n",
    b"DELETE /x HTTP/1.1\r\n\r\n",
    b"PATCH /x HTTP/1.1\r\n\r\n",
    b"GET /%zz%41%2F HTTP/1.1\r\nX-Obs: caf\xe9 \x80\xff\r\n\r\n",
    b"GET /ws/a HTTP/1.1\r\nUpgrade: websocket\r\nProxy-Connection: upgrade\r\n\r\n",
    b"GET /ws/a HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    b"GET /ws/a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: close, upgrade\r\n\r\n",
    b"GET /ws/a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgradex\r\n\r\n",
    b"GET /ws/a HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
    b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nX-Long: " + b"v" * 900 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(100)) + b"\r\n",
]

#: Connection values, each tried with and without Upgrade, over HTTP/1.1 and HTTP/1.0.
CONNECTIONS = [
    b"upgrade",
    b"Upgrade",
    b"UPGRADE",
    b"close",
    b"keep-alive",
    b"Keep-Alive",
    b"closed",
    b"close foo",
    b"foo close",
    b"up grade",
    b"upgrade,",
    b",upgrade",
    b", , upgrade ,",
    b"keep-alive, upgrade",
    b"upgrade, close",
    b"close\t,upgrade",
    b"upgrade\t",
    b"\tclose",
    b"close ,\tkeep-alive",
    b"keep-alive,close",
    b"upgradeclose",
    b"close\x80",
    b"\x80close",
    b"upgrade;q=1",
    b"te, close",
    b"",
    b" ",
    b",",
    b"keep-alive\t,x",
    b"a,b,c, upgrade ,close",
    b"k\xe9ep-alive",
    b"KEEP-ALIVE, UPGRADE",
    b"clo",
    b"keep",
    b"upgrad",
]

#: Places in `WEBSOCKET` where any byte is tried (after the prefix of that length).
PLACES = [
    0, 1, 3, 4, 5, 8, 13, 24, 25, 31, 34, 35, 36, 40, 41, 42, 44, 54, 56, 60, 62,
    len(WEBSOCKET) - 3, len(WEBSOCKET) - 2, len(WEBSOCKET) - 1,
]  # fmt: skip

#: Header lines the generator adds.
ODD_LINES = [
    b"Host: other", b"host:x", b"Content-Length: 0", b"content-length: 3",
    b"Transfer-Encoding: chunked", b"Connection: close", b"Connection: keep-alive",
    b"Connection: upgrade", b"Upgrade:",
    b"Upgrade: h2c", b"Proxy-Connection: close", b"X-Fold: a\r\n b", b" X-Lead: a", b"X-Trail : a",
    b"X-Nul: a\x00b", b"X-Del: a\x7fb", b"X-Ctl: a\x01b", b"X-Obs: \x80\xfe", b"X-Colon:: a",
    b"X-Empty:", b":novalue", b"No-Colon", b"X-Tab:\ta\t", b"Content-Length2: 5", b"X-Lf: a\nb",
    b"X-Cr: a\rb", b"X-Utf8: \xc3\xa9", b"Expect: 100-continue", b"X\xe9: a", b"X(y): a",
]  # fmt: skip
TARGETS = [
    b"/", b"//", b"/a%", b"/a%2", b"/%41?%42", b"/a#b", b"/a?b#c?d", b"/a?", b"/?", b"/#",
    b"*", b"http://h/a?b", b"a", b"", b"/a\tb", b"/a\x80", b"/a b", b"/\x7f", b"/~!$&'()*+,;=:@",
    b"/a\"b<c>{d}|e\\f^g`h[i]", b"/" + b"x" * 200,
]  # fmt: skip
METHODS = [b"GET", b"get", b"Get", b"POST", b"CONNECT", b"PATCH", b"FOO", b"PROPFIND", b"G ET", b""]
VERSIONS = [
    b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"http/1.1", b"HTTP/1.1 ",
    b"HTTP/11", b"",
]  # fmt: skip
AFTER = [b"", b"\x81\x85abcde", NEXT, b"GET /two HTTP/1.1\r\n", b"garbage\r\n\r\n", b"\r\n"]


def outcome(pieces: list[bytes]) -> Outcome:
    """What a parser makes of `pieces`, fed one `receive_data` call each."""
    parser = RequestParser(MAX_HEADER, MAX_BODY)
    requests: list[Request] = []  # (an upgrade's upgrade_data grows with later feeds)
    try:
        for piece in pieces:
            parser.receive_data(piece)
            requests += parser.events_received()
        state = (parser.in_request, parser.in_head, parser.upgraded, parser.finished, parser.held)
        if not parser.upgraded and not parser.finished:
            parser.receive_data(NEXT)  # the state left behind answers the next request
            requests += parser.events_received()
    except RemoteError as exc:
        requests += parser.events_received()  # completed before the error (answered first)
        return [astuple(r) for r in requests], f"{type(exc).__name__}: {exc}"
    return [astuple(r) for r in requests], state


def by_llhttp(data: bytes) -> Outcome:
    """`data` parsed by llhttp only: its first byte alone makes the parser hold a request (or
    an empty line), so the fast path never takes it."""
    return outcome([data[:1], data[1:]])


def assert_same(got: Outcome, expected: Outcome, data: bytes) -> None:
    """The same requests, and the same state or error. Only llhttp's path raises: where it
    raised first may depend on the feeds when the head is also over its size bound."""
    assert got[0] == expected[0], data
    if got[1] != expected[1]:
        assert isinstance(got[1], str) and isinstance(expected[1], str), (data, got, expected)
        assert "HeadersTooLarge" in got[1] + expected[1], (data, got, expected)


def compare(data: bytes, cut: int | None = None) -> bool:
    """Check `data` both ways (and cut at `cut`, if given); whether the fast path took its
    first head."""
    expected = by_llhttp(data)
    assert_same(outcome([data]), expected, data)
    if cut is not None:
        assert_same(outcome([data[:cut], data[cut:]]), expected, data)
    end = data.find(END)
    if end < 0:
        return False
    head = data[: end + 4]
    if len(head) > MAX_HEADER:
        return False  # (`RequestParser` bounds the head before it asks `parse_head`)
    request = parse_head(head)
    if request is None:
        return False
    # Taken: llhttp must take the head alone too, and make the same request of it.
    requests, state = by_llhttp(head)
    assert not isinstance(state, str), (head, state)
    assert requests[0] == astuple(request), head
    return True


def test_a_head_of_the_size_bound_is_taken_and_one_byte_more_refused() -> None:
    start = b"GET / HTTP/1.1\r\nX-Pad: "
    head = start + b"a" * (MAX_HEADER - len(start) - 4) + END
    assert len(head) == MAX_HEADER
    assert compare(head + b"after")
    over = head[:-4] + b"a" + END
    assert not compare(over)
    assert outcome([over])[1] == "HeadersTooLarge: request head over size limit (4097 > 4096 bytes)"


def test_empty_lines_fed_before_a_head_count_in_its_size_bound() -> None:
    start = b"GET / HTTP/1.1\r\nX-Pad: "
    head = start + b"a" * (MAX_HEADER - len(start) - 4 - 4) + END
    requests, state = outcome([b"\r\n\r\n", head])
    assert not isinstance(state, str)
    assert len(requests) == 2  # (with the next)
    requests, state = outcome([b"\r\n\r\n", head[:-4] + b"a" + END])
    assert state == "HeadersTooLarge: request head over size limit (4097 > 4096 bytes)"


@pytest.mark.parametrize("head", VALID, ids=range(len(VALID)))
def test_the_fast_path_takes_a_valid_head_and_makes_llhttps_request(head: bytes) -> None:
    assert compare(head)
    for after in AFTER:
        compare(head + after, cut=len(head))


def test_the_fast_path_flags_upgrade_and_keep_alive_as_llhttp_does() -> None:
    taken = 0
    for version in (b"1.1", b"1.0"):
        for upgrade in (b"", b"Upgrade: websocket\r\n", b"Upgrade:\r\n", b"upgrade: \t\r\n"):
            for value in CONNECTIONS:
                head = b"GET /ws/a HTTP/%b\r\n%bConnection: %b\r\n\r\n" % (version, upgrade, value)
                taken += compare(head + b"\x81\x80abcd")
                head = b"GET / HTTP/%b\r\nConnection: %b\r\nProxy-Connection: upgrade\r\n%b\r\n" % (
                    version,
                    value,
                    upgrade,
                )
                taken += compare(head)
    assert taken == 2 * 2 * 2 * len(CONNECTIONS)  # all but those with an empty Upgrade


def test_any_byte_anywhere_in_a_head_is_taken_only_as_llhttp_takes_it() -> None:
    taken = refused = 0
    for place in PLACES:
        for byte in range(256):
            for head in (
                WEBSOCKET[:place] + bytes([byte]) + WEBSOCKET[place:],  # inserted
                WEBSOCKET[:place] + bytes([byte]) + WEBSOCKET[place + 1 :],  # replaced
            ):
                if compare(head):
                    taken += 1
                elif not isinstance(by_llhttp(head)[1], str):
                    refused += 1  # valid, but left to llhttp
    assert taken > 3000  # (12,288 heads, a third or more still valid)


def test_hand_written_odd_heads_are_taken_only_as_llhttp_takes_them() -> None:
    taken = 0
    for line in ODD_LINES:
        for head in (
            b"GET / HTTP/1.1\r\n%b\r\n\r\n" % line,
            b"GET /ws HTTP/1.1\r\nHost: x\r\n%b\r\nUpgrade: h\r\nConnection: upgrade\r\n\r\n"
            % line,
        ):
            taken += compare(head + b"rest")
    for target in TARGETS:
        taken += compare(b"GET %b HTTP/1.1\r\nHost: x\r\n\r\n" % target)
    for method in METHODS:
        for version in VERSIONS:
            taken += compare(b"%b / %b\r\nHost: x\r\n\r\n" % (method, version))
    for prefix in (b"\r\n", b"\n", b" ", b"\r\n\r\n"):
        assert not compare(prefix + WEBSOCKET)
    assert taken >= 40


def test_mutated_heads_are_taken_only_as_llhttp_takes_them() -> None:
    rng = random.Random(18)
    taken = total = 0
    for _ in range(4000):
        data = mutate(rng, rng.choice(VALID[:-2]))
        total += 1
        taken += compare(data, cut=rng.randrange(len(data) + 1))
    assert taken > total // 6


def mutate(rng: random.Random, head: bytes) -> bytes:
    """`head` changed one to three times (case, whitespace, CR/LF, NUL, DEL, obs-text, lines
    added or repeated, another target, method or version, a long value), then maybe bytes
    after it."""
    data = bytearray(head)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(10)
        where = rng.randrange(max(1, len(data) - 3))  # (before the end of the head)
        line_end = data.find(b"\r\n")
        first_space = data.find(b" ", 0, line_end)
        last_space = data.rfind(b" ", 0, line_end)
        if kind == 0:
            data[where : where + 1] = data[where : where + 1].swapcase()
        elif kind == 1:
            data[where:where] = rng.choice([b" ", b"\t", b"  ", b" \t"])
        elif kind == 2:
            data[where:where] = rng.choice([b"\r", b"\n", b"\r\n", b"\r\n ", b"\x00", b"\x7f"])
        elif kind == 3:
            data[where:where] = bytes(
                [rng.choice([rng.randrange(0x80, 0x100), rng.randrange(256)])]
            )
        elif kind == 4:
            del data[where]
        elif kind == 5 and data.endswith(END):
            lines = bytes(data[:-4]).split(b"\r\n")
            lines.insert(rng.randint(1, len(lines)), rng.choice([*ODD_LINES, rng.choice(lines)]))
            data = bytearray(b"\r\n".join(lines) + END)
        elif kind == 6 and 0 <= first_space < last_space:
            target = rng.choice(TARGETS) + rng.choice([b"", b"?q=%"])
            data[first_space + 1 : last_space] = target
        elif kind == 7 and first_space >= 0:
            data[:first_space] = rng.choice(METHODS)
        elif kind == 8 and last_space >= 0:
            data[last_space + 1 : line_end] = rng.choice(VERSIONS)
        elif kind == 9 and data.endswith(END):
            data[-4:-4] = b"\r\nX-Long: " + b"v" * rng.choice([100, 1000, 5000])
    if rng.randrange(3) == 0:
        data += rng.choice(AFTER)
    return bytes(data)


def test_the_memo_of_header_lines_stays_bounded_whatever_the_lines() -> None:
    for index in range(3 * head_module._FIELDS_KEPT):
        line = b"X-%d: %d" % (index, index)
        long_line = b"X-Long: " + b"v" * head_module._FIELD_KEPT_LENGTH
        request = parse_head(b"GET / HTTP/1.1\r\n%b\r\n%b\r\n\r\n" % (line, long_line))
        assert request is not None
        assert request.headers == [(f"x-{index}", f"{index}"), ("x-long", "v" * 200)]
        assert len(head_module._FIELDS) <= head_module._FIELDS_KEPT
    assert all(len(line) <= head_module._FIELD_KEPT_LENGTH for line in head_module._FIELDS)


def test_credentials_and_websocket_keys_are_never_kept_in_the_memo() -> None:
    """The memo of header lines is the process's: a client's token or cookie must not stay in
    it after its request (nor a handshake's nonce, new each time)."""
    secret_lines = [
        b"Authorization: Bearer not-a-real-token",
        b"Proxy-Authorization: Basic dXNlcjpwYXNz",
        b"Cookie: pushwire_token=also-secret",
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ]
    head = b"GET /ws/room HTTP/1.1\r\nHost: a\r\n" + b"".join(x + b"\r\n" for x in secret_lines)
    request = parse_head(head + b"\r\n")
    assert request is not None
    assert ("authorization", "Bearer not-a-real-token") in request.headers
    assert ("cookie", "pushwire_token=also-secret") in request.headers
    kept = " ".join(head_module._FIELDS)
    for secret in ("not-a-real-token", "dXNlcjpwYXNz", "also-secret", "dGhlIHNhbXBsZSBub25jZQ"):
        assert secret not in kept
    assert "Host: a" in head_module._FIELDS  # (the memo does keep the rest)
