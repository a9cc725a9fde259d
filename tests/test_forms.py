"""Shared form rules (portal.forms): one-line text is cleaned the same way wherever it
enters, so a name or subject can never break an email header or a page's layout."""

from __future__ import annotations

import pytest

from portal.forms import is_one_line, multi_line, one_line

BREAKS = {
    "carriage return": "\r",
    "line feed": "\n",
    "CRLF": "\r\n",
    "vertical tab": "\v",
    "form feed": "\f",
    "NEL (U+0085)": "\x85",
    "line separator (U+2028)": "\u2028",
    "paragraph separator (U+2029)": "\u2029",
    "file separator": "\x1c",
    "record separator": "\x1e",
}
CONTROLS = {
    "NUL": "\x00",
    "bell": "\x07",
    "escape": "\x1b",
    "tab": "\t",
    "delete": "\x7f",
    "C1 CSI": "\x9b",
}


@pytest.mark.parametrize("char", [*BREAKS.values(), *CONTROLS.values()], ids=[*BREAKS, *CONTROLS])
def test_line_breaks_and_control_characters_fold_to_one_space(char):
    assert one_line(f"XYZ{char}Services") == "XYZ Services"
    assert one_line(f"  XYZ {char} {char}Services{char} ") == "XYZ Services"
    assert not is_one_line(f"XYZ{char}Services")


def test_ordinary_text_is_kept():
    for text in ("Zoë's Plumbing & Heating", "Łódź Ogrzewanie", "水道修理", "Café ☕ 👩‍🔧 Crew"):
        assert one_line(text) == text
        assert is_one_line(text)
    assert one_line("  two   spaces  ") == "two spaces"
    assert one_line("") == ""


def test_multi_line_text_keeps_its_lines_with_one_kind_of_line_break():
    text = "Hello\r\nline two\u2028line three\x85four\fend\x07!\tok\n"
    assert multi_line(text) == "Hello\nline two\nline three\nfour\nend !\tok"
