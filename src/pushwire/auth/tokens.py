"""JSON Web Tokens (PyJWT): who a connecting client is, and which private channels it may read.

A **connection token** is a JWT whose `sub` is the user id. Optional claims: `info` (public
info the other members of the user's channels see, as an `on_connect` handler returns it),
`channels` (channels the token lets the user subscribe to, whatever their namespace's rule),
`exp`, `nbf`, `iat` (checked, with `leeway` seconds of clock skew), and `aud`/`iss` (checked
when the server is configured with an audience or issuer).

A **subscription token** lets one user read one private (`$`-prefixed) channel: a JWT with
`sub` (the user) and `channel`, signed with the same keys, with the same time checks.

Keys: an HMAC secret (HS256), or a PEM public key (RS256, ES256), or a JWKS file (a key per
`kid`). The algorithms a key type allows are fixed here: a token cannot choose `none`, or
HS256 signed with a public key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
import orjson
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, RSAAlgorithm

from ..errors import TokenExpired, Unauthorized

__all__ = ["Claims", "TokenVerifier"]

HMAC_ALGORITHMS: Final = ("HS256",)
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
        # PyJWT's signature layer alone (the claims are checked here), with the algorithms a
        # kind of key allows and nothing else, each key prepared once: PyJWT would parse a
        # PEM key, or check that a secret is not one, on every token (a third of the time).
        self._jws = jwt.PyJWS(algorithms=[])
        self._key: Any = None
        self._keys: dict[str, Any] = {}
        self._algorithms: Sequence[str]
        if secret:
            self._jws.register_algorithm("HS256", _PreparedHmac(secret.encode()))
            self._algorithms = HMAC_ALGORITHMS
        else:
            self._jws.register_algorithm("RS256", RSAAlgorithm(RSAAlgorithm.SHA256))
            self._jws.register_algorithm("ES256", ECAlgorithm(ECAlgorithm.SHA256))
            self._algorithms = PUBLIC_KEY_ALGORITHMS
            if public_key:
                self._key = load_pem_public_key(public_key.encode())
            else:
                assert jwks is not None
                key_set = jwt.PyJWKSet.from_json(jwks)
                self._keys = {key.key_id: key.key for key in key_set.keys if key.key_id}
                if not self._keys:
                    raise ValueError("the JWKS has no key with a kid")

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
        return Claims(user, info, frozenset(channels), float(expires) if expires else None)

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
        if len(token) > MAX_TOKEN:
            raise Unauthorized(f"invalid token: over {MAX_TOKEN} characters")
        try:
            key = self._key
            if self._keys:
                kid = jwt.get_unverified_header(token).get("kid")
                key = self._keys.get(kid) if isinstance(kid, str) else None
                if key is None:
                    raise Unauthorized("invalid token: no key for its kid")
            verified = self._jws.decode_complete(token, key, algorithms=list(self._algorithms))
        except jwt.InvalidSignatureError:
            raise Unauthorized("invalid token: bad signature") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthorized("invalid token: algorithm not allowed") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {type(exc).__name__}") from None
        try:
            claims = orjson.loads(verified["payload"])
        except orjson.JSONDecodeError:
            raise Unauthorized("invalid token: its claims are not JSON") from None
        if not isinstance(claims, dict):
            raise Unauthorized("invalid token: its claims are not an object")
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


class _PreparedHmac(HMACAlgorithm):
    """HS256 with its secret taken as it is: checked once, at start (see `TokenVerifier`)."""

    def __init__(self, secret: bytes) -> None:
        super().__init__(HMACAlgorithm.SHA256)
        self._secret = secret

    def prepare_key(self, key: Any) -> bytes:
        return self._secret
