"""Tokens: JWTs round-trip and every kind of bad token is refused with its reason; signing
keys rotate and persist; API keys verify only themselves; random tokens are stored hashed."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from marginflow.core.errors import (
    MSG_AUTH_ALGORITHM,
    MSG_AUTH_AUDIENCE,
    MSG_AUTH_EXPIRED,
    MSG_AUTH_ISSUER,
    MSG_AUTH_MALFORMED,
    MSG_AUTH_NOT_YET_VALID,
    MSG_AUTH_SIGNATURE,
    MSG_AUTH_UNKNOWN_KEY,
    AuthenticationError,
    ConfigurationError,
    MarginflowError,
    ValidationError,
)
from marginflow.service.tokens import (
    LEEWAY_SECONDS,
    SigningKey,
    SigningKeys,
    TokenClaims,
    hash_api_key,
    issue_token,
    new_api_key,
    parse_api_key,
    random_token,
    token_digest,
    verify_api_key,
    verify_token,
)

T0 = 1_750_000_000
KEYS = SigningKeys.generate(T0)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": "alice",
        "roles": ["viewer"],
        "member": "M1",
        "iat": T0,
        "nbf": T0,
        "exp": T0 + 900,
        "jti": "j1",
        "iss": "marginflow",
        "aud": "marginflow-api",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not ...}


def _signed(claims: dict[str, Any], keys: SigningKeys = KEYS, **headers: Any) -> str:
    key = keys.current
    return jwt.encode(claims, key.secret, algorithm="HS256", headers={"kid": key.kid, **headers})


def _refused(token: str, reason: str, *, now: int = T0, keys: SigningKeys = KEYS) -> None:
    with pytest.raises(AuthenticationError) as caught:
        verify_token(keys, token, now=now)
    assert caught.value.reason == reason
    assert str(caught.value) == reason


# ----------------------------------------------------------------------------- round trip


names = st.text(min_size=1, max_size=30)


@settings(deadline=None)
@given(
    names,
    st.lists(names, max_size=5),
    st.none() | names,
    st.integers(1, 10**7),
    st.integers(0, 2**40),
)
def test_a_token_round_trips(
    subject: str, roles: list[str], member: str | None, ttl: int, now: int
) -> None:
    token = issue_token(KEYS, subject=subject, roles=roles, member=member, ttl_seconds=ttl, now=now)
    claims = verify_token(KEYS, token, now=now)
    assert claims.subject == subject
    assert claims.roles == tuple(roles)
    assert claims.member == member
    assert claims.expires == now + ttl
    assert isinstance(claims, TokenClaims)


def test_a_token_carries_the_documented_header_and_claims() -> None:
    token = issue_token(KEYS, subject="alice", roles=["viewer"], member=None, now=T0)
    assert jwt.get_unverified_header(token) == {
        "alg": "HS256",
        "typ": "JWT",
        "kid": KEYS.current.kid,
    }
    payload = json.loads(_unb64(token.split(".")[1]))
    assert payload.keys() == {"sub", "roles", "member", "iat", "nbf", "exp", "jti", "iss", "aud"}
    assert (payload["iat"], payload["nbf"], payload["exp"]) == (T0, T0, T0 + 900)
    assert (payload["iss"], payload["aud"]) == ("marginflow", "marginflow-api")


def test_each_token_has_its_own_jti() -> None:
    tokens = [issue_token(KEYS, subject="a", roles=[], member=None, now=T0) for _ in range(20)]
    assert len({verify_token(KEYS, token, now=T0).jti for token in tokens}) == 20


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        issue_token(KEYS, subject="a", roles=[], member=None, ttl_seconds=0, now=T0)


# ------------------------------------------------------------------------------ time


@given(st.integers(0, 3 * LEEWAY_SECONDS))
def test_expiry_allows_exactly_the_leeway(late: int) -> None:
    token = issue_token(KEYS, subject="a", roles=[], member=None, ttl_seconds=60, now=T0)
    at = T0 + 60 + late
    if late < LEEWAY_SECONDS:
        assert verify_token(KEYS, token, now=at).subject == "a"
    else:
        _refused(token, MSG_AUTH_EXPIRED, now=at)


@given(st.integers(0, 3 * LEEWAY_SECONDS))
def test_a_token_from_the_future_is_refused_beyond_the_leeway(early: int) -> None:
    token = issue_token(KEYS, subject="a", roles=[], member=None, now=T0 + early)
    if early <= LEEWAY_SECONDS:
        assert verify_token(KEYS, token, now=T0).subject == "a"
    else:
        _refused(token, MSG_AUTH_NOT_YET_VALID)


def test_nbf_alone_in_the_future_is_refused() -> None:
    _refused(_signed(_claims(nbf=T0 + 600)), MSG_AUTH_NOT_YET_VALID)


# ----------------------------------------------------------------------- refused tokens


def test_a_token_signed_by_a_rotated_out_key_is_refused() -> None:
    token = issue_token(KEYS, subject="a", roles=[], member=None, now=T0)
    keys = KEYS.rotated(T0 + 1).rotated(T0 + 2)
    assert verify_token(keys, token, now=T0).subject == "a"  # still one of the 3 kept
    _refused(token, MSG_AUTH_UNKNOWN_KEY, keys=keys.rotated(T0 + 3))


def test_a_token_from_a_key_with_the_same_kid_but_another_secret_is_refused() -> None:
    other = SigningKeys((SigningKey(KEYS.current.kid, b"x" * 32, T0),))
    _refused(_signed(_claims(), keys=other), MSG_AUTH_SIGNATURE)


@settings(deadline=None)
@given(
    st.sampled_from(["sub", "roles", "member", "exp", "nbf", "iat", "jti"]),
    st.one_of(st.text(max_size=10), st.integers(), st.lists(st.text(max_size=5), max_size=3)),
)
def test_a_tampered_payload_is_refused(claim: str, value: object) -> None:
    token = issue_token(KEYS, subject="alice", roles=["viewer"], member="M1", now=T0)
    header, payload, signature = token.split(".")
    claims = json.loads(_unb64(payload))
    if claims[claim] == value:
        return
    claims[claim] = value
    forged = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    _refused(forged, MSG_AUTH_SIGNATURE)


def test_a_raised_role_is_refused() -> None:
    token = issue_token(KEYS, subject="alice", roles=["viewer"], member="M1", now=T0)
    header, payload, signature = token.split(".")
    claims = json.loads(_unb64(payload))
    claims["roles"] = ["admin"]
    _refused(".".join([header, _b64(json.dumps(claims).encode()), signature]), MSG_AUTH_SIGNATURE)


def test_alg_none_is_refused() -> None:
    for alg in ("none", "None", "NONE"):
        header = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": KEYS.current.kid}).encode())
        body = _b64(json.dumps(_claims()).encode())
        _refused(f"{header}.{body}.", MSG_AUTH_ALGORITHM)


def test_rs256_is_refused() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_claims(), private, algorithm="RS256", headers={"kid": KEYS.current.kid})
    _refused(token, MSG_AUTH_ALGORITHM)


@pytest.mark.filterwarnings("ignore:The HMAC key is 32 bytes long")
def test_hs512_with_the_right_secret_is_refused() -> None:
    key = KEYS.current
    token = jwt.encode(_claims(), key.secret, algorithm="HS512", headers={"kid": key.kid})
    _refused(token, MSG_AUTH_ALGORITHM)


def test_wrong_issuer_and_audience_are_refused() -> None:
    _refused(_signed(_claims(iss="someone-else")), MSG_AUTH_ISSUER)
    _refused(_signed(_claims(aud="another-api")), MSG_AUTH_AUDIENCE)


def test_unknown_or_missing_kid_is_refused() -> None:
    _refused(_signed(_claims(), kid="0123456789abcdef"), MSG_AUTH_UNKNOWN_KEY)
    key = KEYS.current
    no_kid = jwt.encode(_claims(), key.secret, algorithm="HS256")
    _refused(no_kid, MSG_AUTH_UNKNOWN_KEY)


@pytest.mark.parametrize("claim", ["sub", "roles", "iat", "nbf", "exp", "jti", "iss", "aud"])
def test_a_missing_claim_is_malformed(claim: str) -> None:
    _refused(_signed(_claims(**{claim: ...})), MSG_AUTH_MALFORMED)


@pytest.mark.parametrize(
    "changes",
    [
        {"roles": "admin"},
        {"roles": [1]},
        {"member": 7},
        {"exp": "tomorrow"},
        {"exp": True},
        {"nbf": 1.5},
    ],
)
def test_a_claim_of_the_wrong_type_is_malformed(changes: dict[str, Any]) -> None:
    _refused(_signed(_claims(**changes)), MSG_AUTH_MALFORMED)


@given(st.text(max_size=200))
def test_garbage_is_refused_as_malformed(text: str) -> None:
    with pytest.raises(AuthenticationError) as caught:
        verify_token(KEYS, text, now=T0)
    assert caught.value.reason in {MSG_AUTH_MALFORMED, MSG_AUTH_ALGORITHM, MSG_AUTH_UNKNOWN_KEY}


def test_authentication_error_is_a_marginflow_error() -> None:
    assert issubclass(AuthenticationError, MarginflowError)


# ------------------------------------------------------------------------- signing keys


def test_rotation_appends_a_fresh_key_that_signs_and_keeps_three() -> None:
    keys = SigningKeys.generate(T0)
    first = keys.current
    later = keys.rotated(T0 + 10)
    assert later.keys[0] == first
    assert later.current.created == T0 + 10
    assert len(later.current.kid) == 16
    int(later.current.kid, 16)
    assert len(later.current.secret) == 32
    assert keys.keys == (first,)  # the original is unchanged
    kept = later.rotated(T0 + 20).rotated(T0 + 30)
    assert len(kept.keys) == 3
    assert kept.find(first.kid) is None
    assert kept.find(kept.current.kid) is kept.current
    assert len(later.rotated(T0 + 20, keep=1).keys) == 1


def test_signing_keys_round_trip_through_json() -> None:
    keys = KEYS.rotated(T0 + 1)
    assert SigningKeys.from_json(keys.to_json()) == keys


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"keys": []}',
        '{"keys": 3}',
        '{"keys": [{"kid": "a"}]}',
        '{"keys": [{"kid": "a", "secret": "!!", "created": 1}]}',
        '{"keys": [{"kid": "a", "secret": "AAAA", "created": 1}]}',
        '{"keys": [{"kid": "a", "secret": "' + "A" * 44 + '", "created": "1"}]}',
    ],
)
def test_malformed_signing_keys_name_their_source(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^/etc/keys\.json: "):
        SigningKeys.from_json(text, source="/etc/keys.json")


def test_signing_keys_refuse_short_secrets_duplicates_and_emptiness() -> None:
    with pytest.raises(ConfigurationError, match="need at least 32"):
        SigningKey("k", b"short", T0)
    key = KEYS.current
    with pytest.raises(ConfigurationError, match="twice"):
        SigningKeys((key, key))
    with pytest.raises(ConfigurationError, match="no key"):
        _ = SigningKeys().current


def test_secrets_stay_out_of_reprs() -> None:
    assert KEYS.current.secret.hex() not in repr(KEYS)
    assert repr(KEYS.current.secret) not in repr(KEYS)


# ----------------------------------------------------------------------------- API keys


def test_a_new_api_key_has_the_documented_form() -> None:
    key_id, full_key, key_hash = new_api_key()
    assert len(key_id) == 12
    int(key_id, 16)
    prefix, found_id, secret = full_key.split("_", 2)
    assert (prefix, found_id) == ("mf", key_id)
    assert len(_unb64(secret)) == 32
    assert parse_api_key(full_key) == (key_id, secret)
    assert key_hash == "sha256:" + hashlib.sha256(secret.encode()).hexdigest()
    assert hash_api_key(full_key) == key_hash
    assert verify_api_key(full_key, key_hash)


@settings(max_examples=50)
@given(st.data())
def test_an_api_key_verifies_against_no_other_hash(data: st.DataObject) -> None:
    _, full_key, _ = new_api_key()
    _, _, other_hash = new_api_key()
    assert not verify_api_key(full_key, other_hash)
    # any other text in the secret's place, well-formed or not
    secret = data.draw(st.text(alphabet="ABCxyz019-_", min_size=43, max_size=43))
    other = full_key[: -len(secret)] + secret
    if other != full_key:
        assert not verify_api_key(other, hash_api_key(full_key))


@given(st.text(max_size=80))
def test_anything_else_is_not_an_api_key(text: str) -> None:
    parsed = parse_api_key(text)
    if parsed is not None:
        assert text == f"mf_{parsed[0]}_{parsed[1]}"
    assert verify_api_key(text, "sha256:" + "0" * 64) is False


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mf_",
        "mf_0123456789ab_",
        "mf_0123456789AB_" + "a" * 43,  # upper-case hex
        "mf_0123456789a_" + "a" * 43,
        "xx_0123456789ab_" + "a" * 43,
        "mf_0123456789ab_" + "a" * 42,
        "mf_0123456789ab_" + "a" * 43 + "=",
        " mf_0123456789ab_" + "a" * 43,
    ],
)
def test_malformed_api_keys_do_not_parse(text: str) -> None:
    assert parse_api_key(text) is None
    assert not verify_api_key(text, "sha256:whatever")


def test_verify_api_key_does_not_raise_on_an_odd_stored_hash() -> None:
    _, full_key, _ = new_api_key()
    assert not verify_api_key(full_key, "é")
    assert not verify_api_key(full_key, "")


def test_hash_api_key_refuses_a_malformed_key() -> None:
    with pytest.raises(ValidationError):
        hash_api_key("not-a-key")


# ------------------------------------------------------------------------ random tokens


def test_random_tokens_and_digests() -> None:
    token = random_token()
    assert len(_unb64(token)) == 32
    assert len(_unb64(random_token(16))) == 16
    assert len({random_token() for _ in range(100)}) == 100
    assert token_digest(token) == hashlib.sha256(token.encode()).hexdigest()
    assert token_digest(token) != token_digest(random_token())
