"""Standing import rules match recorded logs exactly as log search would."""

from __future__ import annotations

import pytest
from dataset.log_filters import FilterError, check, errored, log_view, matches

LOG = {
    "log_id": "l1", "source": "proxy", "model": "gpt-4o-mini", "completion_id": "chatcmpl-1", "status_code": 200,
    "received_at": 1_700_000_000_000.0, "metadata": {"prompt_id": "p1", "flag": "true"},
    "req_payload": {"messages": [{"role": "user", "content": "Tell me about Hobart"}]},
    "resp_openai": {"choices": [{"message": {"role": "assistant", "content": "A city in Tasmania"}}]},
}


def f(field: str, value: str, value_type: str = "string") -> dict[str, str]:
    return {"field": field, "value": value, "value_type": value_type}


@pytest.mark.parametrize(("filters", "expected"), [
    ([], True),
    ([f("model", "gpt-4o-mini")], True),
    ([f("model", "gpt-4o")], False),
    ([f("completionId", "chatcmpl-1")], True),
    ([f("statusCode", "200", "number")], True),
    ([f("statusCode", "500", "number")], False),
    ([f("metadata.prompt_id", "p1")], True),
    ([f("tags.prompt_id", "p1")], True),
    ([f("metadata.prompt_id", "p2")], False),
    ([f("metadata.missing", "p1")], False),
    ([f("metadata.flag", "1", "bool")], True),
    ([f("text", "hobart")], True),  # case-insensitive, request side
    ([f("text", "TASMANIA")], True),  # response side
    ([f("text", "Sydney")], False),
    ([f("from", "1699999999999")], True),
    ([f("to", "1700000000000")], False),  # `to` is exclusive
    ([f("model", "gpt-4o-mini"), f("metadata.prompt_id", "nope")], False),  # filters AND together
])
def test_matches(filters: list[dict[str, str]], expected: bool) -> None:
    assert matches(filters, LOG) is expected


def test_check_rejects_what_search_rejects() -> None:
    check([f("model", "x"), f("metadata.k", "v"), f("statusCode", "200")])
    for bad in ([f("color", "red")], [f("metadata.", "v")], [f("statusCode", "ok")], [f("from", "yesterday")]):
        with pytest.raises(FilterError):
            check(bad)


def test_view_and_errored() -> None:
    view = log_view(LOG, "l1")
    assert view["statusCode"] == 200 and view["respOpenai"] == LOG["resp_openai"] and not errored(view)
    assert errored({**view, "statusCode": 500})
    assert errored({**view, "errorMessage": "boom"})
    assert errored({**view, "respOpenai": None})
    # Without an OpenAI view (a plain OpenAI log), the response itself is what import reads.
    plain = log_view({**LOG, "resp_openai": None, "resp_payload": {"choices": []}}, "l1")
    assert plain["respOpenai"] == {"choices": []}


def c(field: str, value: str, op: str = "contains") -> dict[str, str]:
    return {"field": field, "value": value, "value_type": "string", "op": op}


@pytest.mark.parametrize(("filters", "expected"), [
    ([c("request", "HOBART")], True),
    ([c("request", "tasmania")], False),  # only in the response
    ([c("response", "tasmania")], True),
    ([c("response", "tasmania", "not_contains")], False),
    ([c("request", "sydney", "not_contains")], True),
    ([c("model", "4O-MINI")], True),
    ([c("metadata.prompt_id", "P")], True),
    ([c("metadata.missing", "x", "not_contains")], True),
])
def test_contains_and_not_contains_match_as_search_does(filters: list[dict[str, str]], expected: bool) -> None:
    assert matches(filters, LOG) is expected


def test_check_rejects_bad_operators() -> None:
    check([c("request", "x"), c("metadata.k", "v", "not_contains")])
    for bad in ([c("statusCode", "2")], [c("request", "x", "like")], [f("request", "x")]):
        with pytest.raises(FilterError):
            check(bad)
