"""Sticky canary routing: which model variant serves a user, decided by a salted hash of the user id.

A user's bucket ``u = hash(salt, user_id) / 2**64`` is a fixed number in [0, 1); the user goes to
the challenger when ``u < weight``. So the split follows the weight, the same user always gets the
same variant for a given weight, and raising the weight only moves users from champion to
challenger (nobody flips back and forth). Changing the salt reshuffles everyone.
"""

from __future__ import annotations

import hashlib
from typing import Literal

ServingVariant = Literal["champion", "challenger"]
_SCALE = float(2**64)


def user_bucket(user_id: int, salt: str) -> float:
    """The user's fixed position in [0, 1) for ``salt`` (blake2b, 8 bytes; about 1 µs)."""
    digest = hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def assign_variant(user_id: int, weight: float, salt: str) -> ServingVariant:
    """``challenger`` for the ``weight`` share of users (0..1), ``champion`` for the rest; sticky."""
    if weight <= 0.0:
        return "champion"
    if weight >= 1.0:
        return "challenger"
    return "challenger" if user_bucket(user_id, salt) < weight else "champion"
