"""Form rules shared by every way text enters the portal (office forms, `portal import`,
any future API): plain functions, no imports from handlers or the database.

One-line text (a business, customer or staff name, an email subject) must stay on one
line: it ends up in email headers, where a line break either ends the header or makes
Python's email package refuse to build the message, and in page headings.
"""

from __future__ import annotations

import re

# Every character that breaks a line or is a control character: C0 controls (tab, line
# feed, vertical tab, form feed, carriage return and the file/group/record separators
# among them), DEL, C1 controls (NEL U+0085 among them), the line and paragraph
# separators U+2028/U+2029, and lone surrogates (not encodable in UTF-8 at all).
# Format characters such as the zero-width joiner stay: they are part of names and emoji.
_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# Line breaks in multi-line text, longest first so CRLF counts once.
_LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def one_line(value: str) -> str:
    """`value` on one line: every line break and control character folded to a space,
    runs of spaces collapsed, trimmed ("XYZ\\u2028Services" → "XYZ Services")."""
    return " ".join(_BREAKING.sub(" ", value).split())


def is_one_line(value: str) -> bool:
    """True if `value` has no line break or control character (what `one_line` folds)."""
    return _BREAKING.search(value) is None


def count_text(count: int, read_limit: int) -> str:
    """A length for a "(this has …)" message: the real count, or "more than <read_limit>"
    when the field was longer than the portal reads of it (callers cut text at
    `read_limit + 1` characters, so a longer field is told apart without keeping it all)."""
    return f"more than {read_limit:,}" if count > read_limit else f"{count:,}"


def multi_line(value: str) -> str:
    """Text of several lines (a message, a reason, an email's body): every kind of line
    break becomes "\\n", other control characters (tabs aside) a space; trimmed."""
    text = _LINE_BREAK.sub("\n", value)
    return _BREAKING.sub(lambda m: m.group(0) if m.group(0) in "\n\t" else " ", text).strip()
