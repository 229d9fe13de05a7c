"""Markdown tables: the one writer behind every table a command prints or a document holds.

:func:`markdown_table` renders a header, rows of cells and the alignment row between them;
:func:`number_cell` formats a number that may be missing ("–").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

MISSING = "–"


def markdown_table(
    header: Sequence[object], rows: Iterable[Sequence[object]], align: str = "", *, dashes: int = 2
) -> str:
    """The table as Markdown lines joined by newlines (no final newline).

    align: one letter per column, ``l`` (``:--``), ``r`` (``--:``) or ``-`` (``---``: no marker, shown
    left); empty: ``-`` for every column. dashes: how many dashes stand beside a colon (2: ``:--`` /
    ``--:``, 3: ``:---`` / ``---:``); a column without a marker is always ``---``.
    A cell is written as ``str(cell)`` between single spaces; ``None`` is a blank cell (``| |``)."""
    markers = {"l": ":" + "-" * dashes, "r": "-" * dashes + ":", "-": "---"}
    align = align or "-" * len(header)
    if len(align) != len(header) or not set(align) <= set(markers):
        raise ValueError(f"align {align!r}: expected one of l, r, - per column, {len(header)} columns")
    lines = [_row(header), "|" + "".join(markers[letter] + "|" for letter in align)]
    for number, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"row {number} has {len(row)} cells, the header {len(header)}: {row!r}")
        lines.append(_row(row))
    return "\n".join(lines)


def number_cell(value: float | None, spec: str) -> str:
    """``value`` formatted with the format spec ``spec`` (e.g. ``".3f"``, ``"+.4f"``), or "–" when missing."""
    return MISSING if value is None else format(value, spec)


def _row(cells: Sequence[object]) -> str:
    return "|" + "".join(" |" if cell is None else f" {cell} |" for cell in cells)
