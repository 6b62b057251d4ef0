"""Client-controlled text made safe for a text log line.

A request path is decoded (``%0a`` is a newline) and headers may hold any byte, so a value
logged as is can start a forged line or carry lone surrogates that the log's stream
cannot encode. :func:`escaped` writes every character that is not printable as its Python
escape (``\\n``, ``\\x1b``, ``\\udcff``) and doubles backslashes, so a line shows exactly
what was sent and a client's ``\\n`` stays distinguishable from a real newline.
"""

from __future__ import annotations


def escaped(text: str) -> str:
    """``text`` on one printable line (see the module docstring)."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(char if char.isprintable() and char != "\\" else _escape(char) for char in text)


def _escape(char: str) -> str:
    if char == "\\":
        return "\\\\"
    return char.encode("unicode_escape").decode("ascii")
