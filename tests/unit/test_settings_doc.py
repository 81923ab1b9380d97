"""The README's settings table is exactly what the settings classes read."""

from __future__ import annotations

from pathlib import Path

from refinery.settings_doc import table

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- settings-table:start -->\n", "<!-- settings-table:end -->"


def test_readme_settings_table_is_current() -> None:
    text = README.read_text()
    documented = text[text.index(START) + len(START):text.index(END)]
    assert documented == table(), "regenerate the README table: python -m refinery.settings_doc"


def test_every_row_names_a_refinery_variable() -> None:
    rows = [line for line in table().splitlines()[2:]]
    assert rows and all(line.startswith("| `REFINERY_") for line in rows)
