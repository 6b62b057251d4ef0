"""The admin password format (aiclient-formats §5.1).

``pbkdf2:<salt>:<hash>``: salt = 32 hex chars used as UTF-8 *text*, hash =
PBKDF2-HMAC-SHA512(password.strip(), salt, 310000, 64) in hex. Anything else is legacy
plaintext, compared after trimming. Hashing costs about 0.1 s: callers on an event loop run
these functions in a thread.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

DEFAULT_PASSWORD = "admin123"
ITERATIONS = 310_000
PREFIX = "pbkdf2:"


def hash_password(password: str, salt: str | None = None) -> str:
    """Return the stored form of ``password`` (a fresh random salt unless one is given)."""
    salt = salt if salt is not None else secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha512", password.strip().encode(), salt.encode(), ITERATIONS, 64)
    return f"{PREFIX}{salt}:{digest.hex()}"


def is_hashed(stored: str) -> bool:
    parts = stored.strip().split(":")
    return len(stored.strip()) >= 12 and len(parts) == 3 and parts[0] == "pbkdf2"


def verify_password(password: str, stored: str | None) -> bool:
    """Check ``password`` against a stored form; ``None``/empty means the default password."""
    stored = (stored or "").strip() or DEFAULT_PASSWORD
    if is_hashed(stored):
        _, salt, expected = stored.split(":")
        return hmac.compare_digest(hash_password(password, salt), f"{PREFIX}{salt}:{expected}")
    return hmac.compare_digest(password.strip().encode(), stored.encode())
