"""Connection and subscription tokens: signatures, algorithms, time claims, audience, issuer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pushwire.auth.tokens import MAX_TOKEN, TokenVerifier
from pushwire.errors import TokenExpired, Unauthorized

NOW = 1_800_000_000.0
SECRET = "a test secret that is long enough for HS256"


def verifier(**options: Any) -> TokenVerifier:
    return TokenVerifier(secret=SECRET, wall=lambda: NOW, **options)


def token(
    claims: dict[str, Any], key: Any = SECRET, algorithm: str = "HS256", **headers: Any
) -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers or None)


def test_a_valid_token_names_the_user_its_info_channels_and_expiry() -> None:
    claims = {"sub": "alice", "info": {"name": "Alice"}, "channels": ["news"], "exp": NOW + 60}
    got = verifier().connection(token(claims))
    assert (got.user, dict(got.info), got.channels, got.expires) == (
        "alice",
        {"name": "Alice"},
        frozenset({"news"}),
        NOW + 60,
    )


@pytest.mark.parametrize(
    ("claims", "error", "message"),
    [
        ({"sub": "alice", "exp": NOW - 6}, TokenExpired, "token expired"),
        ({"sub": "alice", "nbf": NOW + 6}, Unauthorized, r"not valid yet \(nbf\)"),
        ({"sub": "alice", "iat": NOW + 6}, Unauthorized, r"issued in the future \(iat\)"),
        ({"user": "alice"}, Unauthorized, 'no "sub"'),
        ({"sub": "alice", "info": [1]}, Unauthorized, '"info" must be an object'),
        ({"sub": "alice", "channels": "news"}, Unauthorized, '"channels" must be a list'),
    ],
)
def test_bad_claims_are_refused_with_a_reason(
    claims: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        verifier().connection(token(claims))


def test_the_time_claims_allow_the_leeway_and_no_more() -> None:
    assert verifier().connection(token({"sub": "a", "exp": NOW - 4})).user == "a"  # within 5 s
    with pytest.raises(TokenExpired):
        verifier().connection(token({"sub": "a", "exp": NOW - 5.5}))


def test_a_token_signed_with_another_secret_or_garbage_is_unauthorized() -> None:
    with pytest.raises(Unauthorized, match="bad signature"):
        verifier().connection(token({"sub": "a"}, key="another secret, also long enough"))
    with pytest.raises(Unauthorized, match="its header is not base64url"):
        verifier().connection("not.a.token")
    with pytest.raises(Unauthorized, match="not three base64url parts"):
        verifier().connection("only.two")
    with pytest.raises(Unauthorized, match=f"over {MAX_TOKEN} characters"):
        verifier().connection("x" * (MAX_TOKEN + 1))


def test_an_unsigned_token_is_refused() -> None:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    unsigned = part(b'{"alg":"none","typ":"JWT"}') + "." + part(b'{"sub":"a"}') + "."
    with pytest.raises(Unauthorized, match="algorithm not allowed"):
        verifier().connection(unsigned)


def _unpadded(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("forge", "message"),
    [
        # A second spelling of the same bytes: the last character's unused bits set.
        (lambda good: good[:-1] + chr(ord(good[-1]) + 1), "signature is not base64url"),
        (lambda good: good.replace(".", "=.", 1), "not three base64url parts"),
        (lambda good: good.replace("e", "\u00e9", 1), "not three base64url parts"),
        (lambda good: _unpadded(b"[1]") + good[good.index(".") :], "header is not an object"),
        (lambda good: _unpadded(b"{x") + good[good.index(".") :], "header is not JSON"),
        (
            lambda good: _unpadded(b'{"alg":"HS256","crit":["exp"]}') + good[good.index(".") :],
            "critical header parameters",
        ),
    ],
)
def test_a_token_not_in_the_one_compact_form_is_refused(forge: Any, message: str) -> None:
    good = token({"sub": "a"})
    assert verifier().connection(good).user == "a"
    with pytest.raises(Unauthorized, match=message):
        verifier().connection(forge(good))


def test_claims_that_are_not_an_object_are_refused() -> None:
    signed = _hs256_raw(b"[1]", SECRET.encode())
    with pytest.raises(Unauthorized, match="claims is not an object"):
        verifier().connection(signed)


def test_audience_and_issuer_are_checked_when_configured() -> None:
    checked = verifier(audience="chat", issuer="https://login.example")
    good = {"sub": "a", "aud": "chat", "iss": "https://login.example"}
    assert checked.connection(token(good)).user == "a"
    with pytest.raises(Unauthorized, match="wrong audience"):
        checked.connection(token({**good, "aud": "admin"}))
    with pytest.raises(Unauthorized, match="wrong issuer"):
        checked.connection(token({**good, "iss": "https://evil.example"}))


def _hs256(claims: dict[str, Any], key: bytes) -> str:
    return _hs256_raw(json.dumps(claims).encode(), key)


def _hs256_raw(body: bytes, key: bytes) -> str:
    signed = _unpadded(b'{"alg":"HS256","typ":"JWT"}') + "." + _unpadded(body)
    signature = hmac.new(key, signed.encode(), hashlib.sha256).digest()
    return signed + "." + _unpadded(signature)


def _pem(public: Any) -> str:
    pem: bytes = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


def test_rs256_and_es256_with_a_public_key_and_no_hs256_with_it() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_verifier = TokenVerifier(public_key=_pem(rsa_key.public_key()), wall=lambda: NOW)
    assert rsa_verifier.connection(token({"sub": "r"}, rsa_key, "RS256")).user == "r"
    ec_verifier = TokenVerifier(public_key=_pem(ec_key.public_key()), wall=lambda: NOW)
    assert ec_verifier.connection(token({"sub": "e"}, ec_key, "ES256")).user == "e"
    # The classic confusion: HS256 "signed" with the public key as the secret (built by
    # hand: PyJWT itself refuses to make one).
    forged = _hs256({"sub": "mallory"}, _pem(rsa_key.public_key()).encode())
    with pytest.raises(Unauthorized, match="algorithm not allowed"):
        rsa_verifier.connection(forged)
    # A key checks its own algorithm only: an ES256 token is not tried against an RSA key.
    with pytest.raises(Unauthorized, match="algorithm not allowed"):
        rsa_verifier.connection(token({"sub": "e"}, ec_key, "ES256"))
    with pytest.raises(ValueError, match="RSA key or an EC key on P-256"):
        TokenVerifier(public_key=_pem(ec.generate_private_key(ec.SECP384R1()).public_key()))


def test_a_jwks_picks_the_key_by_kid() -> None:
    keys = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in "ab"}
    document = {
        "keys": [
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid}
            for kid, key in keys.items()
        ]
    }
    checked = TokenVerifier(jwks=json.dumps(document), wall=lambda: NOW)
    assert checked.connection(token({"sub": "b"}, keys["b"], "RS256", kid="b")).user == "b"
    with pytest.raises(Unauthorized, match="bad signature"):
        checked.connection(token({"sub": "b"}, keys["b"], "RS256", kid="a"))
    with pytest.raises(Unauthorized, match="no key for its kid"):
        checked.connection(token({"sub": "b"}, keys["b"], "RS256", kid="c"))


def test_a_subscription_token_is_for_one_user_and_one_channel() -> None:
    grant = token({"sub": "alice", "channel": "$ops", "exp": NOW + 60})
    assert verifier().subscription(grant, "alice", "$ops") == NOW + 60
    for user, channel in (("bob", "$ops"), ("alice", "$other")):
        with pytest.raises(Unauthorized, match="not for this user"):
            verifier().subscription(grant, user, channel)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenVerifier(secret="x" * 31)


def test_exactly_one_kind_of_key() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        TokenVerifier()
    with pytest.raises(ValueError, match="exactly one"):
        TokenVerifier(secret="x", public_key="y")
