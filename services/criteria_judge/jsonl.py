"""An alignment set from a JSONL file: fine-tuning rows with an optional human `judgement`.

Each line is judged on its own: a bad line is reported by its 1-based number and the good lines are
kept. The last message of a line is the output under judgement (it must be an assistant message);
the messages before it, with `tools` and `tool_choice`, are the input. A line longer than the limit,
or nested deeper than an event can carry, fails that line only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from refinery.events.criteria import HumanJudgement
from refinery.wire.entries import EntryError, parse_entry

from criteria_judge.store import NewRow

MAX_JSONL_BYTES = 10 * 1024 * 1024  # the documented upload limit of an alignment set
MAX_DEPTH = 64  # far more than any chat row needs; orjson writes at most 254 levels into the event
HUMAN_JUDGEMENTS: dict[str, HumanJudgement] = {"PASS": "PASS", "FAIL": "FAIL"}  # SKIP is set by labeling only
TOO_DEEP = f"line nests objects and arrays more than {MAX_DEPTH} levels deep"


@dataclass(frozen=True)
class LineError:
    line: int  # 1-based
    message: str


def too_deep(value: Any, limit: int) -> bool:
    """Whether `value` nests objects and arrays more than `limit` levels deep (walked level by level)."""
    level = [value] if isinstance(value, (dict, list)) else []
    for _ in range(limit):
        if not level:
            return False
        level = [child for node in level for child in (node.values() if isinstance(node, dict) else node)
                 if isinstance(child, (dict, list))]
    return bool(level)


def row_of(obj: Any) -> NewRow:
    """One decoded line as an alignment row; EntryError names what is wrong with it."""
    if not isinstance(obj, dict):
        raise EntryError("the line must be a JSON object")
    raw = obj.get("judgement")
    label = HUMAN_JUDGEMENTS.get(raw.upper()) if isinstance(raw, str) else None
    if raw is not None and label is None:
        raise EntryError("judgement must be PASS or FAIL (or absent)")
    entry = parse_entry(obj)
    judged_input: dict[str, Any] = {"messages": entry.messages[:-1]}
    if entry.tools is not None:
        judged_input["tools"] = entry.tools
    if entry.tool_choice is not None:
        judged_input["tool_choice"] = entry.tool_choice
    return NewRow(judged_input, entry.messages[-1], label)


def parse_alignment_jsonl(data: bytes, max_line_bytes: int) -> tuple[list[NewRow], list[LineError]]:
    rows: list[NewRow] = []
    errors: list[LineError] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        if len(line) > max_line_bytes:
            errors.append(LineError(number, f"line is {len(line)} bytes; a line may hold at most {max_line_bytes}"))
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            deep = str(exc).startswith("depth limit")  # orjson's own limit, far past ours
            errors.append(LineError(number, TOO_DEEP if deep else f"invalid JSON: {str(exc)[:200]}"))
            continue
        if too_deep(obj, MAX_DEPTH):
            errors.append(LineError(number, TOO_DEEP))
            continue
        try:
            rows.append(row_of(obj))
        except EntryError as exc:
            errors.append(LineError(number, str(exc)))
    return rows, errors
