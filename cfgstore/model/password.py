"""The admin password format (aiclient-formats §5.1).

``pbkdf2:<salt>:<hash>``: salt = 32 hex chars used as UTF-8 *text*, hash =
PBKDF2-HMAC-SHA512(password.trim(), salt, 310000, 64) in hex. Anything else is legacy
plaintext, compared after trimming. Trimming is JavaScript's (:func:`js_trim`). Hashing
costs about 0.1 s: callers on an event loop run these functions in a thread.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

DEFAULT_PASSWORD = "admin123"
"""The Node service's default: reported (``isDefaultPassword``) when it is the stored
password, never accepted when none is stored."""
ITERATIONS = 310_000
PREFIX = "pbkdf2:"

JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
"""What JavaScript's ``String.prototype.trim`` removes. Python's ``str.strip()`` differs:
it keeps a byte-order mark (U+FEFF, e.g. from a pwd file saved by Notepad) and removes
U+001C–U+001F and U+0085, which JavaScript keeps."""


def js_trim(text: str) -> str:
    """``text.trim()`` as the Node service computes it."""
    return text.strip(JS_WHITESPACE)


MIN_PASSWORD_LENGTH = 12
"""The shortest Web-UI password accepted, counted after trimming (the Node service's
``PASSWORD.MIN_LENGTH``): the one rule of the admin API (``POST /api/admin-password``),
the web UI's form and ``cfgctl init --password-file``."""

PASSWORD_RULE = f"at least {MIN_PASSWORD_LENGTH} characters (spaces around trimmed)"


def password_problem(password: str) -> str | None:
    """:data:`PASSWORD_RULE` when ``password`` breaks it, else ``None``."""
    return PASSWORD_RULE if len(js_trim(password)) < MIN_PASSWORD_LENGTH else None


def hash_password(password: str, salt: str | None = None) -> str:
    """Return the stored form of ``password`` (a fresh random salt unless one is given)."""
    salt = salt if salt is not None else secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac(
        "sha512", js_trim(password).encode(), salt.encode(), ITERATIONS, 64
    )
    return f"{PREFIX}{salt}:{digest.hex()}"


def is_hashed(stored: str) -> bool:
    trimmed = js_trim(stored)
    parts = trimmed.split(":")
    return len(trimmed) >= 12 and len(parts) == 3 and parts[0] == "pbkdf2"


def verify_password(password: str, stored: str | None) -> bool:
    """Check ``password`` against a stored form. ``None``/blank (no password set) matches
    nothing: unlike the Node service, the well-known ``admin123`` is never a default
    (``cfgctl serve`` generates a password for a folder without one)."""
    stored = js_trim(stored or "")
    if not stored:
        return False
    if is_hashed(stored):
        _, salt, expected = stored.split(":")
        # Compare bytes: compare_digest() raises TypeError on non-ASCII str (a corrupt file).
        actual = hash_password(password, salt).encode()
        return hmac.compare_digest(actual, f"{PREFIX}{salt}:{expected}".encode())
    return hmac.compare_digest(js_trim(password).encode(), stored.encode())
