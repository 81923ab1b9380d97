"""An alignment-set JSONL file: good lines become rows (input, output, human label), bad lines are
reported by their 1-based number and the rest are kept."""

from __future__ import annotations

import orjson
from criteria_judge.jsonl import MAX_DEPTH, parse_alignment_jsonl


def _line(obj: object) -> bytes:
    return orjson.dumps(obj)


ROW = {"messages": [{"role": "system", "content": "You are a helpful assistant"},
                    {"role": "user", "content": "What is the capital of Sweden?"},
                    {"role": "assistant", "content": None, "tool_calls": [
                        {"id": "", "type": "function",
                         "function": {"name": "identify_capital", "arguments": "{\"capital\":\"Stockholm\"}"}}]}],
       "tools": [{"type": "function", "function": {"name": "identify_capital", "parameters": {
           "type": "object", "properties": {"capital": {"type": "string"}}}}}]}


def test_the_documented_example_splits_into_input_output_and_label() -> None:
    data = b"\n".join([_line({"judgement": "PASS", **ROW}), _line({"judgement": "FAIL", **ROW}), _line(ROW)])
    rows, errors = parse_alignment_jsonl(data, 1 << 20)
    assert errors == []
    assert [r.human_judgement for r in rows] == ["PASS", "FAIL", None]
    row = rows[0]
    assert [m["role"] for m in row.input["messages"]] == ["system", "user"]
    assert row.input["tools"][0]["function"]["name"] == "identify_capital"
    assert "tool_choice" not in row.input
    assert row.output["role"] == "assistant"
    assert row.output["tool_calls"][0]["function"]["arguments"] == "{\"capital\":\"Stockholm\"}"


def test_bad_lines_are_reported_by_number_and_good_ones_kept() -> None:
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    deep: object = "x"
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    lines = [
        _line(good),  # 1
        b"",  # 2: blank, skipped
        b"{not json",  # 3
        _line({"messages": [{"role": "user", "content": "no answer"}]}),  # 4
        _line({**good, "judgement": "MAYBE"}),  # 5
        b"   ",  # 6: blank
        _line([1, 2]),  # 7
        _line({**good, "judgement": "fail"}),  # 8: any case is fine
        _line({**good, "deep": deep}),  # 9
        b"{" + b'"a": "' + b"x" * 3000 + b'"}',  # 10: too long for a 2 KiB limit
        _line({**good, "judgement": None}),  # 11: null means unlabeled
    ]
    rows, errors = parse_alignment_jsonl(b"\n".join(lines) + b"\n", 2048)
    assert [r.human_judgement for r in rows] == [None, "FAIL", None]
    assert [e.line for e in errors] == [3, 4, 5, 7, 9, 10]
    messages = {e.line: e.message for e in errors}
    assert messages[3].startswith("invalid JSON")
    assert messages[4] == "messages must end with an assistant message"
    assert messages[5] == "judgement must be PASS or FAIL (or absent)"
    assert messages[7] == "the line must be a JSON object"
    assert f"more than {MAX_DEPTH} levels deep" in messages[9]
    assert "at most 2048" in messages[10]


def test_a_line_past_orjsons_own_depth_limit_fails_that_line_only() -> None:
    good = _line({"messages": [{"role": "assistant", "content": "ok"}]})
    rows, errors = parse_alignment_jsonl(b"[" * 2000 + b"]" * 2000 + b"\n" + good, 1 << 20)
    assert len(rows) == 1 and rows[0].input == {"messages": []}
    assert [e.line for e in errors] == [1] and "levels deep" in errors[0].message


def test_an_empty_file_adds_nothing() -> None:
    assert parse_alignment_jsonl(b"", 1024) == ([], [])
    assert parse_alignment_jsonl(b"\n\n  \n", 1024) == ([], [])
