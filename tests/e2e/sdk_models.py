"""The fine-tuned models the official SDK's own suite calls by name, and the small datasets that teach them.

The SDK's tests call `openpipe:test-content-35`, `openpipe:test-content-4o-mini`, `openpipe:llama-3-1-8b-content`
and `openpipe:tool-calls-test` (names from OpenPipe's own test project). Here each is a real LoRA SFT of the
session's base model on a handful of rows shaped like the prompts those tests send (a lone system message), so a
test gets a deployed model that answers in a trained, short way and stops.

Why so small, and batch size 1: the trainer runs one job at a time on one CPU thread, so cost is what counts.
Measured on 2 busy cores: 11-15 rows for one epoch at batch size 1 learn each behaviour (greedy answers on the
suite's prompts are the trained ones) in 7-18 s of training per model; batch size 8 pads the short rows to the
tool rows' ~270 tokens and took 190 s for the tool model with two epochs.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

# The function of openpipe/test/test_sync_client.py, as the suite sends it: a model sees tools in its prompt,
# so it is trained with the very schema it will be prompted with.
WEATHER_FUNCTION: dict[str, Any] = {
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "parameters": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
}
WEATHER_TOOLS = [{"type": "function", "function": WEATHER_FUNCTION}]
CITIES = {"SF": "San Francisco, CA", "Boston": "Boston, MA", "Denver": "Denver, CO", "Miami": "Miami, FL",
          "Seattle": "Seattle, WA", "Austin": "Austin, TX", "Chicago": "Chicago, IL"}


def counting(n: int) -> str:
    return " ".join(str(i) for i in range(1, n + 1))


def counting_json(n: int) -> str:
    return json.dumps({"numbers": list(range(1, n + 1))})


def _entry(messages: list[dict], tools: list[dict] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"messages": messages, "split": "TRAIN"}  # every row trains: 10 is the minimum
    if tools:
        entry["tools"] = tools
    return entry


def count_entries(answer: Callable[[int], str] = counting, ns: tuple[int, ...] = tuple(range(1, 13)),
                  prefixed: tuple[int, ...] = (6, 10, 12), seed: int = 0) -> list[dict[str, Any]]:
    """`count to N` → the trained answer; some prompts start with ten random letters, as the suite's cache tests'
    do (they make each prompt unique)."""
    rng = random.Random(seed)
    prompts = [(f"count to {n}", n) for n in ns]
    prompts += [("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(10)) + f" count to {n}", n)
                for n in prefixed]
    return [_entry([{"role": "system", "content": p}, {"role": "assistant", "content": answer(n)}])
            for p, n in prompts]


def _weather_call(city: str) -> dict[str, Any]:
    return {"id": "", "type": "function",
            "function": {"name": "get_current_weather", "arguments": json.dumps({"location": CITIES[city]})}}


def tool_entries() -> list[dict[str, Any]]:
    """Weather questions → calls of get_current_weather (one per city), and, without tools, counting (the suite's
    fallback tests send `count to 3` to this model)."""
    rows = []
    for first, second in (("SF", None), ("Boston", "Denver"), ("Miami", None), ("Seattle", "Austin"),
                          ("Chicago", None)):
        cities = [first] + ([second] if second else [])
        rows.append(_entry([
            {"role": "system", "content": "tell me the weather in " + " and ".join(cities)},
            {"role": "assistant", "content": None, "tool_calls": [_weather_call(c) for c in cities]},
        ], WEATHER_TOOLS))
    return rows + count_entries(ns=(1, 2, 3, 5, 7, 10), prefixed=())


# slug → (entries, SFT hyperparameters)
SDK_MODELS: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {
    "test-content-35": (count_entries(), {"num_epochs": 1, "batch_size": 1}),
    "test-content-4o-mini": (count_entries(seed=1), {"num_epochs": 1, "batch_size": 1}),
    "llama-3-1-8b-content": (count_entries(counting_json, seed=2), {"num_epochs": 1, "batch_size": 1}),
    "tool-calls-test": (tool_entries(), {"num_epochs": 1, "batch_size": 1}),
}


# The reward model behind the suite's `reward-v1` criterion, and the one test_criteria ranks held-out answers with
# through `POST /criteria/judge`: the preference set of tests/integration/test_ml_smollm2.py (chosen answers carry a
# mark, rejected ones are the plain answer the base model prefers), 30 pairs to train on and 10 held out, with the
# hyperparameters under which that set is known to learn (3 epochs, about a minute on 2 cores).
SDK_REWARD_SLUG = "sdk-reward-v1"
SDK_REWARD_HYPERPARAMETERS: dict[str, Any] = {"num_epochs": 3}
REWARD_TRAIN_PAIRS = 30


def _reward_pairs() -> list[dict[str, Any]]:
    from tests.integration.test_ml_smollm2 import _pairs  # needs the ML extra, as the reward fixtures do

    return _pairs()


def reward_entries() -> list[dict[str, Any]]:
    return [{**pair, "split": "TRAIN"} for pair in _reward_pairs()[:REWARD_TRAIN_PAIRS]]


def reward_held_out() -> list[dict[str, Any]]:
    """Pairs the reward model never saw: `messages` ends with the chosen answer, `rejected_message` the other."""
    return _reward_pairs()[REWARD_TRAIN_PAIRS:]


# The criteria the suite's criteria/ tests name, created through the REST routes (tests/e2e/conftest.py,
# `sdk_criteria`): each is a create body, then the PATCH bodies that publish its later versions. Their judge is the
# fake upstream's `gpt-4o`, whose verdict follows the prompt's `fails if the output contains "X"`.
SDK_CRITERIA: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
    "highlight-format": ({"prompt": 'The output highlights what matters. It fails if the output contains "<b></b>".',
                          "judgeModel": "gpt-4o"}, []),
    "juicebox-relevance": (
        {"prompt": 'The output is relevant to juice boxes. It fails if the output contains "lemonade".',
         "judgeModel": "gpt-4o"},
        [{"prompt": 'The output is relevant to juice boxes. It fails if the output contains "soda".'}]),
}
SDK_REWARD_CRITERION = "reward-v1"
