"""The response cache key covers every field that changes the answer, the project and the upstream."""

from __future__ import annotations

from proxy_router.caching import cache_key, scoped_to

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_every_field_that_changes_the_answer_changes_the_key() -> None:
    base = cache_key("p1", BODY)
    for field, value in (("n", 3), ("stop", ["\n"]), ("seed", 7), ("temperature", 0.0), ("top_p", 0.5),
                         ("max_completion_tokens", 5), ("max_tokens", 5), ("tools", []), ("logit_bias", {"1": 2}),
                         ("response_format", {"type": "json_object"}), ("some_future_field", True)):
        assert cache_key("p1", {**BODY, field: value}) != base, field


def test_fields_that_change_nothing_in_the_answer_and_key_order_do_not() -> None:
    base = cache_key("p1", BODY)
    assert cache_key("p1", {**BODY, "metadata": {"k": "v"}, "store": True, "user": "u", "stream": False}) == base
    assert cache_key("p1", dict(reversed(list(BODY.items())))) == base


def test_the_key_is_scoped_to_the_project_and_the_upstream() -> None:
    key = cache_key("p1", BODY)
    assert cache_key("p2", BODY) != key
    one = scoped_to(key, "https://api.openai.com/v1", "sk-a")
    assert scoped_to(key, "https://api.openai.com/v1", "sk-a") == one
    assert scoped_to(key, "https://api.openai.com/v1", "sk-b") != one  # another account
    assert scoped_to(key, "https://other.example/v1", "sk-a") != one  # another provider
    assert scoped_to(key, "http://inference", "", (("x-adapter", "m1"),)) != scoped_to(
        key, "http://inference", "", (("x-adapter", "m2"),))  # another fine-tuned model
    assert "sk-a" not in one
