"""Passwords: argon2id hashes with pinned parameters, verification that never raises, the
policy's rules one by one, and generated passwords that always pass it."""

from __future__ import annotations

import string

import pytest
from argon2 import PasswordHasher, Type
from hypothesis import given, settings
from hypothesis import strategies as st

from marginflow.service.passwords import (
    COMMON_PASSWORDS,
    GENERATED_LENGTH,
    MAX_LENGTH,
    MIN_LENGTH,
    MSG_CLASSES,
    MSG_COMMON,
    MSG_CONTAINS_USERNAME,
    MSG_CONTROL,
    MSG_TOO_LONG,
    MSG_TOO_SHORT,
    check_policy,
    generate_password,
    hash_password,
    needs_rehash,
    verify_password,
)

GOOD = "Correct-Horse7"
ALL_REASONS = {MSG_TOO_SHORT, MSG_TOO_LONG, MSG_CONTAINS_USERNAME, MSG_CLASSES, MSG_COMMON}
ALL_REASONS |= {MSG_CONTROL}


@pytest.fixture(scope="module")
def stored() -> str:
    # One hash for the module: each costs about 0.1 s by design.
    return hash_password(GOOD)


def test_hash_is_argon2id_with_the_pinned_parameters(stored: str) -> None:
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_hashes_are_salted() -> None:
    assert hash_password(GOOD) != hash_password(GOOD)


def test_verify_accepts_the_password(stored: str) -> None:
    assert verify_password(stored, GOOD)


@settings(max_examples=5, deadline=None)
@given(st.text(max_size=40).filter(lambda text: text != GOOD))
def test_verify_refuses_any_other_password(stored: str, other: str) -> None:
    assert not verify_password(stored, other)


@pytest.mark.parametrize(
    "stored_hash",
    ["", "garbage", "$argon2id$v=19$m=65536,t=3,p=4$abc$def", "$2b$12$" + "a" * 53],
)
def test_verify_returns_false_for_a_damaged_hash(stored_hash: str) -> None:
    assert verify_password(stored_hash, GOOD) is False


def test_verify_returns_false_for_a_lone_surrogate(stored: str) -> None:
    assert verify_password(stored, "\ud800" * 12) is False


def test_needs_rehash(stored: str) -> None:
    weaker = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)
    assert not needs_rehash(stored)
    assert needs_rehash(weaker.hash(GOOD))
    assert needs_rehash("not a hash")


def test_a_good_password_passes() -> None:
    assert check_policy(GOOD, username="alice") == []


@pytest.mark.parametrize(
    ("password", "username", "reason"),
    [
        ("Abc-1234567", "alice", MSG_TOO_SHORT),  # 11 characters
        ("Ab1-" * 64 + "x", "alice", MSG_TOO_LONG),  # 257 characters
        ("xxALICE-2024yy", "alice", MSG_CONTAINS_USERNAME),
        ("Hello-alice-99", "ALICE", MSG_CONTAINS_USERNAME),
        ("abcdefghijk12", "alice", MSG_CLASSES),  # lower and digits only
        ("ABCDEFGHIJKLMNOPQRS", "alice", MSG_CLASSES),  # 19 characters, one class
        ("Password123456", "alice", MSG_COMMON),
        ("QWERTYUIOP123", "alice", MSG_COMMON),
        ("Correct-Horse7\x00", "alice", MSG_CONTROL),
        ("Correct-Horse7\n", "alice", MSG_CONTROL),
        ("Correct-Horse7\ud800", "alice", MSG_CONTROL),
    ],
)
def test_each_rule_refuses(password: str, username: str, reason: str) -> None:
    assert reason in check_policy(password, username=username)


def test_exactly_the_limits_pass() -> None:
    assert check_policy("Abc-12345678", username="alice") == []
    assert len("Abc-12345678") == MIN_LENGTH
    assert check_policy("Ab1-" * 64, username="alice") == []
    assert len("Ab1-" * 64) == MAX_LENGTH


def test_a_passphrase_of_twenty_characters_needs_no_classes() -> None:
    assert check_policy("correct horse battery", username="alice") == []
    assert check_policy("abcdefghijklmnopqrst", username="alice") == []


def test_a_username_shorter_than_three_characters_is_not_looked_for() -> None:
    assert check_policy("Jo-Correct-Horse7", username="jo") == []
    assert check_policy(GOOD, username="") == []


def test_three_classes_of_four_are_enough() -> None:
    assert check_policy("abcdefgh-123", username="alice") == []  # lower, other, digit
    assert check_policy("mnbvcxzaLKJH", username="alice") == [MSG_CLASSES]


def test_non_ascii_letters_count_in_their_class() -> None:
    assert check_policy("éèàçüöäßÉÈÀ1", username="alice") == []


def test_several_reasons_are_all_given() -> None:
    assert check_policy("alice", username="alice") == [
        MSG_TOO_SHORT,
        MSG_CONTAINS_USERNAME,
        MSG_CLASSES,
    ]


def test_the_common_list_is_long_enough_to_matter_and_folded() -> None:
    assert len(COMMON_PASSWORDS) >= 30
    for password in COMMON_PASSWORDS:
        assert len(password) >= MIN_LENGTH, password
        assert password == password.casefold(), password
        assert MSG_COMMON in check_policy(password.upper(), username="zzz")


@given(st.text(max_size=300), st.text(max_size=20))
def test_policy_never_raises_and_says_only_known_reasons(password: str, username: str) -> None:
    assert set(check_policy(password, username=username)) <= ALL_REASONS


@given(st.text(max_size=20))
def test_generated_passwords_pass_the_policy_for_any_username(username: str) -> None:
    password = generate_password(username=username)
    assert check_policy(password, username=username) == []


def test_generated_passwords_have_every_class() -> None:
    for _ in range(50):
        password = generate_password()
        assert len(password) == GENERATED_LENGTH
        assert check_policy(password, username="") == []
        assert any(char in string.ascii_lowercase for char in password)
        assert any(char in string.ascii_uppercase for char in password)
        assert any(char in string.digits for char in password)
        assert any(not char.isalnum() for char in password)
        assert password.isprintable()
        assert " " not in password


def test_generated_passwords_differ() -> None:
    assert len({generate_password() for _ in range(100)}) == 100
