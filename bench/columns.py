"""The plain left-aligned tables the single-topic benchmarks print (datasets, criteria, evals, console)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def print_columns(title: str, header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> None:
    """`title` on its own line after a blank one, then `header` and `rows` in columns as wide as their cells."""
    cells = [[str(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for r in cells:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
