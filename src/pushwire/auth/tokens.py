"""JSON Web Tokens (PyJWT): who a connecting client is, and which private channels it may read.

A **connection token** is a JWT whose `sub` is the user id. Optional claims: `info` (public
info the other members of the user's channels see, as an `on_connect` handler returns it),
`channels` (channels the token lets the user subscribe to, whatever their namespace's rule),
`admin` (`true`: an admin JWT, which may watch the admin page's figures: `auth.admin`),
`exp`, `nbf`, `iat` (checked, with `leeway` seconds of clock skew), and `aud`/`iss` (checked
when the server is configured with an audience or issuer).

A **subscription token** lets one user read one private (`$`-prefixed) channel: a JWT with
`sub` (the user) and `channel`, signed with the same keys, with the same time checks.

Keys: an HMAC secret (HS256), or a PEM public key (RS256, ES256), or a JWKS file (a key per
`kid`). The algorithm a key allows is fixed by its type: a token cannot choose `none`, or
HS256 signed with a public key, or ES256 against an RSA key.

The signatures are checked by PyJWT's algorithms; the token's compact form (RFC 7515 7.1:
three base64url parts, each in its one canonical spelling) and its claims (RFC 7519 7.2) are
read here, in ~11 us for an HS256 token where `jwt.decode` took ~27 us (PyJWT checks each
character of a part in Python).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import Algorithm, ECAlgorithm, HMACAlgorithm, RSAAlgorithm

from ..errors import TokenExpired, Unauthorized

__all__ = ["Claims", "TokenVerifier"]

PUBLIC_KEY_ALGORITHMS: Final = ("RS256", "ES256")
#: Shortest HMAC secret accepted, bytes.
MIN_SECRET: Final = 32
#: Longest token accepted, characters: a token is parsed only when it is shorter.
MAX_TOKEN: Final = 8192


@dataclass(frozen=True, slots=True)
class Claims:
    """What a valid connection token says."""

    user: str
    info: Mapping[str, Any]
    channels: frozenset[str]
    expires: float | None  # the `exp` claim (seconds since the epoch), None when there is none
    #: The `admin` claim is `true`: an admin JWT (the admin page's figures, auth/admin.py).
    admin: bool = False


class TokenVerifier:
    """Checks connection and subscription tokens (see the module docstring).

    Args:
        secret: HMAC secret for HS256.
        public_key: PEM public key for RS256 or ES256.
        jwks: a JWKS document (JSON text), keys chosen by the token's `kid`.
        audience: the `aud` a token must name (none checked when None).
        issuer: the `iss` a token must have (none checked when None).
        leeway: seconds of clock skew allowed on `exp`, `nbf`, `iat`.
        wall: the wall clock (seconds since the epoch) the time claims are checked against.

    Raises:
        ValueError: no key, or more than one kind of key.
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        jwks: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 5.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        given = [key for key in (secret, public_key, jwks) if key]
        if len(given) != 1:
            raise ValueError("give exactly one of a JWT secret, a public key or a JWKS")
        if secret and len(secret.encode()) < MIN_SECRET:
            # RFC 7518 3.2: an HS256 key at least as long as the hash (32 bytes).
            raise ValueError(f"the JWT secret must be at least {MIN_SECRET} bytes")
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway
        self._wall = wall
        # PyJWT's algorithms check the signatures, each with its key prepared once; the compact
        # form (three base64url parts) is read here: PyJWT's reader checks each character in
        # Python, which was four fifths of a token's time (~35 of ~43 us for an HS256 token).
        # Each key allows one algorithm, fixed by its type: a token cannot choose `none`, or
        # HS256 signed with a public key, or ES256 against an RSA key.
        self._verifiers: dict[str, _Verifier] = {}
        self._keys: dict[str, _Verifier] = {}
        if secret:
            hmac = HMACAlgorithm(HMACAlgorithm.SHA256)
            self._verifiers["HS256"] = _Verifier("HS256", hmac, secret.encode())
        elif public_key:
            verifier = _public_verifier(load_pem_public_key(public_key.encode()))
            self._verifiers[verifier.algorithm] = verifier
        else:
            assert jwks is not None
            for jwk in jwt.PyJWKSet.from_json(jwks).keys:
                if jwk.key_id and jwk.algorithm_name in PUBLIC_KEY_ALGORITHMS:
                    self._keys[jwk.key_id] = _public_verifier(jwk.key)
            if not self._keys:
                raise ValueError("the JWKS has no RS256 or ES256 key with a kid")

    @classmethod
    def from_files(
        cls,
        *,
        secret: str | None = None,
        public_key_file: str | None = None,
        jwks_file: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 5.0,
    ) -> TokenVerifier:
        """A verifier whose public key or JWKS is read from a file."""
        return cls(
            secret=secret,
            public_key=Path(public_key_file).read_text() if public_key_file else None,
            jwks=Path(jwks_file).read_text() if jwks_file else None,
            audience=audience,
            issuer=issuer,
            leeway=leeway,
        )

    @property
    def leeway(self) -> float:
        """Seconds of clock skew allowed on the time claims."""
        return self._leeway

    @property
    def wall(self) -> Callable[[], float]:
        """The wall clock the time claims are checked against (an `exp` is read on it)."""
        return self._wall

    def connection(self, token: str) -> Claims:
        """The claims of a valid connection token.

        Raises:
            TokenExpired: its `exp` has passed (the client gets a new token, then comes back).
            Unauthorized: anything else wrong with it (the reason says what, never the token).
        """
        claims = self._decode(token)
        user = claims.get("sub")
        if not isinstance(user, str) or not user:
            raise Unauthorized('invalid token: no "sub" (user id)')
        info = claims.get("info", {})
        if not isinstance(info, dict):
            raise Unauthorized('invalid token: "info" must be an object')
        channels = claims.get("channels", [])
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise Unauthorized('invalid token: "channels" must be a list of channel names')
        expires = claims.get("exp")
        admin = claims.get("admin") is True
        return Claims(user, info, frozenset(channels), float(expires) if expires else None, admin)

    def subscription(self, token: str, user: str | None, channel: str) -> float | None:
        """Check that a subscription token lets `user` read `channel`; its expiry (or None).

        Raises:
            TokenExpired, Unauthorized: as `connection`, or the token names another user or
                channel.
        """
        claims = self._decode(token)
        if claims.get("sub") != user or claims.get("channel") != channel:
            raise Unauthorized(f"subscription token is not for this user and {channel!r}")
        expires = claims.get("exp")
        return float(expires) if expires else None

    def _decode(self, token: str) -> dict[str, Any]:
        """The claims of a token whose signature and time claims are valid (RFC 7515 7.1: the
        compact form; RFC 7519 7.2: its validation)."""
        if len(token) > MAX_TOKEN:
            raise Unauthorized(f"invalid token: over {MAX_TOKEN} characters")
        parts = _COMPACT.fullmatch(token)
        if parts is None:
            raise Unauthorized("invalid token: not three base64url parts")
        header = _json_part(parts[1], "header")
        if "crit" in header:
            raise Unauthorized("invalid token: critical header parameters are not supported")
        algorithm = header.get("alg")
        if self._keys:
            kid = header.get("kid")
            verifier = self._keys.get(kid) if isinstance(kid, str) else None
            if verifier is None:
                raise Unauthorized("invalid token: no key for its kid")
        else:
            verifier = self._verifiers.get(algorithm) if isinstance(algorithm, str) else None
        if verifier is None or verifier.algorithm != algorithm:
            raise Unauthorized("invalid token: algorithm not allowed")
        signed = f"{parts[1]}.{parts[2]}".encode()
        if not verifier.check.verify(signed, verifier.key, _part(parts[3], "signature")):
            raise Unauthorized("invalid token: bad signature")
        claims = _json_part(parts[2], "claims")
        if self._audience is not None:
            audience = claims.get("aud")
            named = audience if isinstance(audience, list) else [audience]
            if self._audience not in named:
                raise Unauthorized("invalid token: wrong audience")
        if self._issuer is not None and claims.get("iss") != self._issuer:
            raise Unauthorized("invalid token: wrong issuer")
        self._check_times(claims)
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now, leeway = self._wall(), self._leeway
        times = {}
        for name in ("exp", "nbf", "iat"):
            value = claims.get(name)
            if value is None:
                continue
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise Unauthorized(f'invalid token: "{name}" is not a number')
            times[name] = float(value)
        if "exp" in times and now > times["exp"] + leeway:
            raise TokenExpired("token expired")
        if "nbf" in times and now < times["nbf"] - leeway:
            raise Unauthorized("invalid token: not valid yet (nbf)")
        if "iat" in times and now < times["iat"] - leeway:
            raise Unauthorized("invalid token: issued in the future (iat)")


#: A compact JWS: header, payload and signature in base64url without padding.
_COMPACT: Final = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)")


# The characters a canonical part may end with, by its length modulo 4: 4 bits past its last
# byte (2 characters for 1 byte), 2 bits (3 characters for 2 bytes), none; 1 is never a length.
_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_LAST_CHARACTERS: Final = ("", None, _ALPHABET[::16], _ALPHABET[::4])


@dataclass(frozen=True, slots=True)
class _Verifier:
    """One key and the one algorithm it checks signatures with."""

    algorithm: str
    check: Algorithm
    key: Any  # prepared for `check`: the secret's bytes, or a cryptography public key


def _public_verifier(key: object) -> _Verifier:
    if isinstance(key, RSAPublicKey):
        return _Verifier("RS256", RSAAlgorithm(RSAAlgorithm.SHA256), key)
    if isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, SECP256R1):
        return _Verifier("ES256", ECAlgorithm(ECAlgorithm.SHA256), key)
    raise ValueError("a JWT public key must be an RSA key or an EC key on P-256")


def _part(text: str, name: str) -> bytes:
    """A base64url part (of `_COMPACT`'s alphabet), decoded; only its one canonical spelling
    is accepted: the bits past the last byte, in its last character, are zero."""
    last = _LAST_CHARACTERS[len(text) % 4]
    if last is None or (last and text[-1] not in last):
        raise Unauthorized(f"invalid token: its {name} is not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json_part(text: str, name: str) -> dict[str, Any]:
    try:
        value = orjson.loads(_part(text, name))
    except orjson.JSONDecodeError:
        raise Unauthorized(f"invalid token: its {name} is not JSON") from None
    if not isinstance(value, dict):
        raise Unauthorized(f"invalid token: its {name} is not an object")
    return value
