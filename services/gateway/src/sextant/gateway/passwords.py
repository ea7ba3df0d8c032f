"""Passwords of accounts: argon2id hashes (``argon2-cffi``), never stored or shown in clear.

A hash made with weaker parameters than the current ones verifies still, and is reported as
needing a rehash so that sign-in replaces it while it has the password in hand.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 1024

_hasher = PasswordHasher()
# Verified when the email names no account, so that an unknown email takes as long to
# refuse as a wrong password does (no account enumeration by timing).
_DECOY_HASH = _hasher.hash("a password no account has")


@dataclass(frozen=True)
class Check:
    matches: bool
    needs_rehash: bool = False


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string) of ``password`` with the current parameters."""
    return _hasher.hash(password)


def check_password(stored_hash: str, password: str) -> Check:
    """Whether ``password`` matches ``stored_hash`` (an empty hash matches nothing), and
    whether the hash should be replaced by one with the current parameters."""
    if not stored_hash:
        check_decoy(password)
        return Check(matches=False)
    try:
        _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return Check(matches=False)
    return Check(matches=True, needs_rehash=_hasher.check_needs_rehash(stored_hash))


def check_decoy(password: str) -> None:
    """Spend the time of one verification, for an email that names no account."""
    with contextlib.suppress(VerificationError):
        _hasher.verify(_DECOY_HASH, password)


def password_problem(password: str) -> str | None:
    """Why ``password`` is not acceptable as a new password; None if it is."""
    if len(password) < MIN_LENGTH:
        return f"a password has at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    return None
