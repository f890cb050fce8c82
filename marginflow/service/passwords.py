"""Passwords: argon2id hashes, a password policy, and generated passwords.

Why these choices:

* **argon2id** is the memory-hard hash recommended by RFC 9106 and OWASP: the memory cost
  makes GPU and ASIC guessing of a stolen hash expensive, and the ``id`` variant resists
  both side-channel and trade-off attacks. The parameters are RFC 9106's second
  recommendation ("low memory"): time cost 3, 64 MiB, parallelism 4, a 16-byte salt and a
  32-byte hash (about 50 ms a hash on a server core). They are written out here, not taken
  from the library's defaults, so that an upgrade of argon2-cffi cannot silently change
  them; :func:`needs_rehash` tells when a stored hash was made with other parameters, so
  it can be replaced at the next successful login.
* :func:`verify_password` compares in constant time (argon2 does) and returns ``False`` for
  anything that does not verify, including a damaged stored hash, so a login route has one
  outcome to handle and cannot leak why.
* The policy follows NIST SP 800-63B (length first, a list of known passwords) with a
  character-class rule for short passwords as the risk policy of a margin platform asks;
  a passphrase of 20 characters or more is exempt from it. A username is looked for only
  when it has at least 3 characters, as Active Directory does: a shorter one would refuse
  a large share of good passwords.
"""

from __future__ import annotations

import secrets
import string
import unicodedata

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 256
PASSPHRASE_LENGTH = 20  # from this length on the character classes are not required
MIN_CLASSES = 3
MIN_USERNAME_CHECKED = 3
GENERATED_LENGTH = 20

MSG_TOO_SHORT = f"must be at least {MIN_LENGTH} characters"
MSG_TOO_LONG = f"must be at most {MAX_LENGTH} characters"
MSG_CONTAINS_USERNAME = "must not contain the username"
MSG_CLASSES = (
    f"must mix at least {MIN_CLASSES} of lower-case letters, upper-case letters, digits and "
    f"other characters (or be at least {PASSPHRASE_LENGTH} characters long)"
)
MSG_COMMON = "is one of the most common passwords"
MSG_CONTROL = "must not contain control characters"

_HASHER = PasswordHasher(
    time_cost=3,
    memory_cost=64 * 1024,  # KiB
    parallelism=4,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)

# The most common passwords of at least MIN_LENGTH characters in public breach lists (shorter
# ones fail on length already). Compared case-insensitively.
COMMON_PASSWORDS = frozenset(
    {
        "123456789012",
        "1234567890123",
        "12345678901234",
        "123456789123",
        "1234567891011",
        "123123123123",
        "111111111111",
        "000000000000",
        "123412341234",
        "147258369147",
        "1q2w3e4r5t6y",
        "1qaz2wsx3edc",
        "1qaz2wsx3edc4rfv",
        "zaq12wsxcde3",
        "qwertyuiop12",
        "qwertyuiop123",
        "qwertyuiop1234",
        "qwertyuiopasdfghjkl",
        "qwerty123456",
        "qwerty1234567",
        "asdfghjkl123",
        "asdfghjkl1234",
        "1234qwerasdf",
        "1234qwerasdfzxcv",
        "password1234",
        "password12345",
        "password123456",
        "password123!",
        "password1234!",
        "passw0rd1234",
        "p@ssw0rd1234",
        "p@ssword1234",
        "passwordpassword",
        "iloveyou1234",
        "iloveyou123456",
        "welcome12345",
        "welcome123456",
        "changeme1234",
        "changeme123!",
        "letmein12345",
        "administrator",
        "administrator1",
        "admin1234567",
        "adminadmin123",
        "abcdefghijkl",
        "abc123456789",
        "abcd12345678",
        "football1234",
        "baseball1234",
        "superman1234",
        "sunshine1234",
        "princess1234",
        "monkey123456",
        "dragon123456",
        "trustno1trustno1",
        "marginflow123",
        "marginflow1234",
    }
)

_SYMBOLS = "!#%+-.=@_~"
_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits, _SYMBOLS)
_ALPHABET = "".join(_CLASSES)


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` in PHC string form (``$argon2id$v=19$m=…``)."""
    return str(_HASHER.hash(password))


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; ``False``, never an error, otherwise."""
    try:
        return bool(_HASHER.verify(stored_hash, password))
    except (VerificationError, InvalidHashError):
        return False
    except UnicodeEncodeError:
        # A lone surrogate (JSON can carry "\ud800") cannot be UTF-8: it matches nothing.
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` was made with other parameters than today's (or is unreadable).

    Call it after a successful :func:`verify_password` and store a fresh hash if so.
    """
    try:
        return bool(_HASHER.check_needs_rehash(stored_hash))
    except (InvalidHashError, ValueError):
        return True


def _character_class(char: str) -> int:
    if char.islower():
        return 0
    if char.isupper():
        return 1
    if char.isdigit():
        return 2
    return 3


def check_policy(password: str, *, username: str) -> list[str]:
    """Why ``password`` is refused for ``username``: ``MSG_*`` texts, empty when it is fine.

    Lengths count characters (code points), not bytes.
    """
    reasons: list[str] = []
    if len(password) < MIN_LENGTH:
        reasons.append(MSG_TOO_SHORT)
    if len(password) > MAX_LENGTH:
        reasons.append(MSG_TOO_LONG)
    folded = password.casefold()
    name = username.strip().casefold()
    if len(name) >= MIN_USERNAME_CHECKED and name in folded:
        reasons.append(MSG_CONTAINS_USERNAME)
    classes = {_character_class(char) for char in password}
    if len(password) < PASSPHRASE_LENGTH and len(classes) < MIN_CLASSES:
        reasons.append(MSG_CLASSES)
    if folded in COMMON_PASSWORDS:
        reasons.append(MSG_COMMON)
    # Cc are control characters; Cs are lone surrogates, which cannot even be encoded.
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in password):
        reasons.append(MSG_CONTROL)
    return reasons


def generate_password(*, username: str = "") -> str:
    """A random password of 20 characters with every character class; passes the policy.

    Letters, digits and the symbols ``!#%+-.=@_~`` (none that a shell or a URL treats
    specially besides ``#`` and ``%``, all on every keyboard); about 122 bits of entropy.
    Given ``username``, a password that happens to contain it is drawn again.
    """
    while True:
        chars = [secrets.choice(group) for group in _CLASSES]
        chars += [secrets.choice(_ALPHABET) for _ in range(GENERATED_LENGTH - len(chars))]
        # Shuffle so the guaranteed characters are not always in the first four places.
        secrets.SystemRandom().shuffle(chars)
        password = "".join(chars)
        if not check_policy(password, username=username):
            return password
