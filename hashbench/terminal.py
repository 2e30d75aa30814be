"""Strings from users, data and plugins, made safe to show in a terminal.

Names, descriptions, error messages and paths can hold anything: Rich markup (``[blink]``,
``[/]``) that Rich would read as styling or refuse with a ``MarkupError``, and control
characters (``ESC [2J`` clears the screen, ``ESC ]0;…`` retitles the window, ``\\r`` rewrites
the line, bidirectional overrides reorder it).  Every such string goes through :func:`plain`
(for ``click.echo`` and ``markup=False`` output) or :func:`markup` (for anything Rich reads as
markup: ``console.print`` with markup, table cells, titles, progress descriptions).
"""

from __future__ import annotations

import re

from rich.markup import escape

#: C0 controls but tab and newline, DEL, C1 controls, and the bidirectional embeddings,
#: overrides and isolates (U+202A–U+202E, U+2066–U+2069)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(value: object, *, one_line: bool = False) -> str:
    """``value`` as text whose control characters are shown escaped (``\\x1b``), never obeyed.

    ``one_line`` also turns newlines and tabs into spaces (one-line messages).
    """
    text = _CONTROL.sub(_visible, str(value))
    if one_line:
        text = text.replace("\n", " ").replace("\t", " ")
    return text


def markup(value: object, *, one_line: bool = False) -> str:
    """``value`` for a place where Rich reads markup: :func:`plain`, then markup escaped."""
    return escape(plain(value, one_line=one_line))
