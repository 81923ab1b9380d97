"""The incremental JSON-object check behind constrained decoding (json mode, forced tool calls)."""

from __future__ import annotations

import json
import random

import pytest
from refinery.ml.json_prefix import JsonPrefix, is_json_object_prefix

VALID = [
    "{}",
    '{"a": 1}',
    '{"a": -0.5e+10, "b": [1, 2.25, -3E2, 0], "c": {"d": [true, false, null, {}]}, "e": []}',
    '{"s": "quote \\" backslash \\\\ slash \\/ \\b\\f\\n\\r\\t unicode \\u00e9\\u20AC", "ü": "naïve ✓"}',
    ' \n{"x":[[[]]]}',
    '{ "spaced" : [ 1 , 2 ] }',
]

INVALID = [
    "[1, 2]",  # the top level must be an object
    '"text"',
    "   {}",  # more leading whitespace than allowed (2)
    "{'a': 1}",
    '{"a" 1}',
    '{"a": 01}',
    '{"a": 1.}',
    '{"a": .5}',
    '{"a": -}',
    '{"a": 1e}',
    '{"a": tru}',
    '{"a": True}',
    '{"a": [1,]}',
    '{"a": 1,}',
    '{,}',
    '{"a": 1]',
    '{"a": [1}',
    '{"a": "line\nbreak"}',
    '{"a": "\\x"}',
    '{"a": "\\u12G4"}',
    "{} trailing",
    "{}{}",
    '{1: 2}',
]


@pytest.mark.parametrize("text", VALID)
def test_every_prefix_of_valid_json_is_accepted_and_only_the_whole_is_done(text: str) -> None:
    json.loads(text)  # the fixture itself is valid JSON
    for cut in range(len(text) + 1):
        state = JsonPrefix()
        assert state.feed(text[:cut]), (text, cut)
        assert state.done == (cut == len(text)), (text, cut)


@pytest.mark.parametrize("text", INVALID)
def test_invalid_json_objects_are_rejected(text: str) -> None:
    assert not is_json_object_prefix(text)


def test_state_is_incremental_and_copies_are_independent() -> None:
    state = JsonPrefix()
    assert state.feed('{"k": [1')
    trial = state.copy()
    assert not trial.feed("}")  # the array is still open
    assert state.feed("2") and state.feed("]") and not state.done  # the original is unaffected
    assert state.copy().feed("}")
    assert state.feed(', "s": "a') and state.in_string
    assert state.feed('"}') and state.done and not state.in_string
    assert not state.feed(" ")  # nothing may follow a complete object


def test_leading_whitespace_limit_is_configurable() -> None:
    assert JsonPrefix(max_leading_ws=0).feed("{}")
    assert not JsonPrefix(max_leading_ws=0).feed(" {}")
    assert JsonPrefix(max_leading_ws=5).feed("     {}")


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.choice(["obj", "arr", "str", "int", "float", "lit"] if depth < 3 else ["str", "int", "float", "lit"])
    if kind == "obj":
        return {rng.choice(["a", "b", "é", 'q"', "k\\"]) + str(i): _random_value(rng, depth + 1)
                for i in range(rng.randint(0, 3))}
    if kind == "arr":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "str":
        return "".join(rng.choice('ab "\\/\n\té✓') for _ in range(rng.randint(0, 5)))
    if kind == "int":
        return rng.randint(-1000, 1000)
    if kind == "float":
        return rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-30, 30)
    return rng.choice([True, False, None])


def test_mutated_json_agrees_with_json_loads() -> None:
    """One-character edits of random valid objects: the checker's verdict on the whole text (a valid prefix that
    is complete) matches json.loads's, over thousands of near-valid texts."""
    rng = random.Random(3)
    alphabet = '{}[]":, 0123456789-+.eEtrufalsn\\'
    agreed_valid = agreed_invalid = 0
    for _ in range(4000):
        obj = {"root": _random_value(rng)}
        text = json.dumps(obj, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1]))
        state = JsonPrefix(max_leading_ws=0)
        assert state.feed(text) and state.done, text
        i = rng.randrange(len(text))
        edit = rng.choice(["insert", "delete", "replace"])
        if edit == "insert":
            text = text[:i] + rng.choice(alphabet) + text[i:]
        elif edit == "delete":
            text = text[:i] + text[i + 1:]
        else:
            text = text[:i] + rng.choice(alphabet) + text[i + 1:]
        state = JsonPrefix(max_leading_ws=0)
        complete = state.feed(text) and state.done
        try:
            loads_ok = isinstance(json.loads(text), dict) and text == text.strip()
        except ValueError:
            loads_ok = False
        assert complete == loads_ok, text
        agreed_valid += loads_ok
        agreed_invalid += not loads_ok
    assert agreed_valid > 500 and agreed_invalid > 500  # both verdicts were really exercised
