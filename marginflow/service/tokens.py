"""Access tokens (JWT), API keys, and random tokens for sessions and CSRF.

Why these choices:

* **HS256 with rotating keys, not RS256.** The service issues its tokens and is the only one
  to verify them, so a public key would have no reader; a shared secret is simpler and
  faster, and nothing outside the service ever needs key material. Each token names its
  signing key in the ``kid`` header; :meth:`SigningKeys.rotated` adds a new key that signs
  from then on while the previous ones still verify until they age out (3 keys kept by
  default: with a rotation per day and tokens of 15 minutes that is ample).
* **Only HS256 is accepted.** The algorithm is checked before anything else and PyJWT is
  given ``algorithms=["HS256"]``, so ``alg: none`` and the RS256/HS256 key-confusion
  attack are refused. ``iss`` and ``aud`` are required and checked so that a token minted
  for another purpose cannot be replayed here.
* **Time is checked here, not by PyJWT**, with the ``now`` the caller passes (tests and
  clocks are explicit) and 30 seconds of leeway for clock skew between workers.
* **API keys are hashed with plain SHA-256.** A password needs a slow hash because people
  pick guessable ones; an API key's secret is 256 random bits, which no amount of guessing
  reaches, so a fast hash loses nothing and keeps each request cheap (the standard choice,
  as GitHub and Stripe do). The key id in the clear lets the service find the row by id and
  compare one hash in constant time.
* Session ids and CSRF tokens are stored as their SHA-256 digest for the same reason: a
  leaked table then holds nothing a client could present.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt

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
    ValidationError,
)

ALGORITHM = "HS256"
ISSUER = "marginflow"
AUDIENCE = "marginflow-api"
LEEWAY_SECONDS = 30
DEFAULT_TTL_SECONDS = 900
KEEP_SIGNING_KEYS = 3
SIGNING_KEY_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
API_KEY_PREFIX = "mf"

_REQUIRED_CLAIMS = ["sub", "roles", "iat", "nbf", "exp", "jti", "iss", "aud"]
_API_KEY = re.compile(r"mf_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


def _now(now: int | None) -> int:
    return int(time.time()) if now is None else now


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One HS256 key: ``kid`` names it in token headers, ``created`` is unix seconds."""

    kid: str
    secret: bytes = field(repr=False)
    created: int

    def __post_init__(self) -> None:
        if not self.kid:
            raise ConfigurationError("a signing key needs a kid")
        if len(self.secret) < SIGNING_KEY_BYTES:
            raise ConfigurationError(
                f"signing key {self.kid!r} is {len(self.secret)} bytes, "
                f"need at least {SIGNING_KEY_BYTES}"
            )


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """The signing keys, oldest first: the newest signs, every one still verifies."""

    keys: tuple[SigningKey, ...] = ()

    def __post_init__(self) -> None:
        kids = [key.kid for key in self.keys]
        if len(set(kids)) != len(kids):
            raise ConfigurationError("signing keys: a kid appears twice")

    @classmethod
    def generate(cls, now: int | None = None) -> SigningKeys:
        """A first set of one fresh key."""
        return cls().rotated(_now(now))

    @property
    def current(self) -> SigningKey:
        """The key that signs new tokens (the newest)."""
        if not self.keys:
            raise ConfigurationError("signing keys: there is no key")
        return self.keys[-1]

    def find(self, kid: str) -> SigningKey | None:
        """The key named ``kid``, or ``None`` (rotated out or never ours)."""
        return next((key for key in self.keys if key.kid == kid), None)

    def rotated(self, now: int, *, keep: int = KEEP_SIGNING_KEYS) -> SigningKeys:
        """A new set: a fresh random key appended (it signs from now on), only the newest
        ``keep`` kept, so tokens signed by the oldest key dropped are refused."""
        if keep < 1:
            raise ValidationError("keep", f"must be >= 1, got {keep!r}")
        fresh = SigningKey(
            kid=secrets.token_hex(8), secret=secrets.token_bytes(SIGNING_KEY_BYTES), created=now
        )
        return SigningKeys((*self.keys, fresh)[-keep:])

    def to_json(self) -> str:
        """``{"keys": [{"kid", "secret" (base64), "created"}]}``, oldest first."""
        return json.dumps(
            {
                "keys": [
                    {
                        "kid": key.kid,
                        "secret": base64.b64encode(key.secret).decode("ascii"),
                        "created": key.created,
                    }
                    for key in self.keys
                ]
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "signing keys") -> SigningKeys:
        """Read :meth:`to_json`'s form; ConfigurationError naming ``source`` if malformed."""
        try:
            data = json.loads(text)
            items = data["keys"]
            if not isinstance(items, list):
                raise TypeError
            keys = []
            for item in items:
                kid, secret, created = item["kid"], item["secret"], item["created"]
                if not (
                    isinstance(kid, str)
                    and isinstance(secret, str)
                    and isinstance(created, int)
                    and not isinstance(created, bool)
                ):
                    raise TypeError
                keys.append(SigningKey(kid, base64.b64decode(secret, validate=True), created))
            if not keys:
                raise ConfigurationError("there is no key")
            return cls(tuple(keys))
        except ConfigurationError as error:
            raise ConfigurationError(f"{source}: {error}") from None
        except (ValueError, TypeError, KeyError, binascii.Error):
            raise ConfigurationError(
                f'{source}: not of the form {{"keys": [{{"kid", "secret", "created"}}]}}'
            ) from None


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says: ``expires`` is unix seconds, ``jti`` its unique id."""

    subject: str
    roles: tuple[str, ...]
    member: str | None
    expires: int
    jti: str


def issue_token(
    keys: SigningKeys,
    *,
    subject: str,
    roles: Sequence[str],
    member: str | None,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: int | None = None,
) -> str:
    """A JWT signed with ``keys.current``, valid from ``now`` for ``ttl_seconds``."""
    if ttl_seconds <= 0:
        raise ValidationError("ttl_seconds", f"must be > 0, got {ttl_seconds!r}")
    issued = _now(now)
    key = keys.current
    claims: dict[str, Any] = {
        "sub": subject,
        "roles": list(roles),
        "member": member,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
        "jti": secrets.token_urlsafe(16),
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def verify_token(keys: SigningKeys, token: str, *, now: int | None = None) -> TokenClaims:
    """The claims of ``token``; AuthenticationError (``reason`` a ``MSG_AUTH_*``) otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthenticationError(MSG_AUTH_MALFORMED) from None
    if header.get("alg") != ALGORITHM:
        raise AuthenticationError(MSG_AUTH_ALGORITHM)
    kid = header.get("kid")
    key = keys.find(kid) if isinstance(kid, str) else None
    if key is None:
        raise AuthenticationError(MSG_AUTH_UNKNOWN_KEY)
    try:
        claims = jwt.decode(
            token,
            key.secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            # Times are checked below against the caller's clock.
            options={
                "require": _REQUIRED_CLAIMS,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise AuthenticationError(MSG_AUTH_SIGNATURE) from None
    except jwt.InvalidAlgorithmError:
        raise AuthenticationError(MSG_AUTH_ALGORITHM) from None
    except jwt.InvalidIssuerError:
        raise AuthenticationError(MSG_AUTH_ISSUER) from None
    except jwt.InvalidAudienceError:
        raise AuthenticationError(MSG_AUTH_AUDIENCE) from None
    except jwt.PyJWTError:
        raise AuthenticationError(MSG_AUTH_MALFORMED) from None

    subject, roles, member = claims["sub"], claims["roles"], claims.get("member")
    expires, not_before, issued, jti = claims["exp"], claims["nbf"], claims["iat"], claims["jti"]
    if not (
        isinstance(subject, str)
        and isinstance(roles, list)
        and all(isinstance(role, str) for role in roles)
        and (member is None or isinstance(member, str))
        and isinstance(jti, str)
        and all(_is_int(value) for value in (expires, not_before, issued))
    ):
        raise AuthenticationError(MSG_AUTH_MALFORMED)
    current = _now(now)
    # Same bounds as PyJWT's: valid while now < exp + leeway and nbf, iat <= now + leeway.
    if current >= expires + LEEWAY_SECONDS:
        raise AuthenticationError(MSG_AUTH_EXPIRED)
    if not_before > current + LEEWAY_SECONDS or issued > current + LEEWAY_SECONDS:
        raise AuthenticationError(MSG_AUTH_NOT_YET_VALID)
    return TokenClaims(subject=subject, roles=tuple(roles), member=member, expires=expires, jti=jti)


def new_api_key() -> tuple[str, str, str]:
    """A new API key as ``(key_id, full_key, key_hash)``.

    ``full_key`` is ``mf_<key_id>_<secret>`` (12 hex digits, then 32 random bytes in
    URL-safe base64 without padding): show it once, store only ``key_id`` and ``key_hash``.
    """
    key_id = secrets.token_hex(6)
    full_key = f"{API_KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    return key_id, full_key, hash_api_key(full_key)


def parse_api_key(text: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed API key, else ``None``."""
    match = _API_KEY.fullmatch(text)
    return (match[1], match[2]) if match else None


def hash_api_key(full_key: str) -> str:
    """``sha256:<hex>`` of the key's secret part (see the module docstring for why fast)."""
    parsed = parse_api_key(full_key)
    if parsed is None:
        raise ValidationError("api key", "is not of the form mf_<12 hex>_<43 base64url>")
    return "sha256:" + hashlib.sha256(parsed[1].encode("ascii")).hexdigest()


def verify_api_key(full_key: str, stored_hash: str) -> bool:
    """Whether ``full_key`` hashes to ``stored_hash`` (constant-time; ``False`` if malformed).

    The caller finds ``stored_hash`` by the key id of ``full_key``.
    """
    if parse_api_key(full_key) is None:
        return False
    return hmac.compare_digest(hash_api_key(full_key).encode(), stored_hash.encode())


def random_token(nbytes: int = 32) -> str:
    """``nbytes`` random bytes in URL-safe base64: a session id or a CSRF token."""
    return secrets.token_urlsafe(nbytes)


def token_digest(token: str) -> str:
    """SHA-256 hex of ``token``: what is stored for a session id or CSRF token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
