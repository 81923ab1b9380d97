"""Trainer and engine plumbing on a tiny random Llama (2 layers, hidden 64, a 259-token byte-level tokenizer).

Nothing here checks that a model learns (tests/integration/test_ml_smollm2.py does, on the real base); this checks
files, events, validation, cancellation, adapters and generation shapes in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from inference.engine import Completion, Engine, GenerationParams, UnknownAdapter
from trainer.training import (
    Cancelled,
    DpoParams,
    SftParams,
    TrainEvent,
    TrainingError,
    score_pairs,
    train_dpo,
    train_reward,
    train_sft,
)

BASE_ID = "test/tiny-llama"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}}


def _tiny_base(target: Path) -> Path:
    """A byte-level BPE without merges (every byte a token) plus ChatML specials, and a random 2-layer Llama."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.save_pretrained(target)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(target)
    return target


def _row(i: int) -> dict:
    return {"messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": f"What is {i} plus 1?"},
        {"role": "assistant", "content": f"It is {i + 1}."},
    ]}


def _tool_row(i: int) -> dict:
    call = {"id": f"c{i}", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    return {"tools": [WEATHER_TOOL], "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": f"c{i}", "content": "rain"},
        {"role": "assistant", "content": "Rain."},
    ]}


def _pair(i: int) -> dict:
    row = _row(i)
    row["rejected_message"] = {"role": "assistant", "content": "No idea."}
    return row


ROWS = [_row(i) for i in range(10)] + [_tool_row(i) for i in range(2)]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_base(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture(scope="module")
def sft(base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[TrainEvent]]:
    out = tmp_path_factory.mktemp("sft")
    events: list[TrainEvent] = []
    metrics = train_sft(base, BASE_ID, ROWS, ROWS[:2], out, SftParams(epochs=1), on_event=events.append)
    return out, metrics, events


def test_sft_writes_adapter_metrics_and_events(sft: tuple[Path, dict, list[TrainEvent]]) -> None:
    out, metrics, events = sft
    adapter = out / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == BASE_ID
    meta = json.loads((adapter / "refinery.json").read_text())
    assert meta["base_model"] == BASE_ID and meta["kind"] == "sft"
    assert set(metrics) >= {"train_loss", "eval_loss", "steps", "epochs", "train_tokens", "seconds",
                            "tokens_per_second"}
    assert metrics["steps"] == 2 and metrics["epochs"] == 1  # 12 rows, auto batch 8
    assert metrics["eval_loss"] is not None and metrics["train_tokens"] > 0

    steps = [e for e in events if e.kind == "step"]
    assert len(steps) == 2 and all(e.loss is not None and e.total_steps == 2 for e in steps)
    assert all(e.token_accuracy is not None for e in steps)
    epochs = [e for e in events if e.kind == "epoch"]
    assert len(epochs) == 1 and epochs[0].checkpoint_dir is not None
    checkpoint = Path(epochs[0].checkpoint_dir)
    assert checkpoint == out / "checkpoints" / "epoch-1"
    assert (checkpoint / "adapter_model.safetensors").is_file()
    assert [e.eval_loss is not None for e in events if e.kind == "eval"] == [True]


def test_too_few_rows_and_missing_assistant(base: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="at least 10 training examples are needed, got 9"):
        train_sft(base, BASE_ID, ROWS[:9], [], tmp_path, SftParams())
    bad = [*ROWS[:11], {"messages": [{"role": "user", "content": "hi"}]}]
    with pytest.raises(TrainingError, match="must end with an assistant message"):
        train_sft(base, BASE_ID, bad, [], tmp_path, SftParams())
    with pytest.raises(TrainingError, match="rejected_message"):
        train_dpo(base, BASE_ID, ROWS, [], tmp_path, DpoParams())


def test_should_stop_cancels(base: Path, tmp_path: Path) -> None:
    steps: list[TrainEvent] = []
    with pytest.raises(Cancelled):
        train_sft(base, BASE_ID, ROWS, [], tmp_path, SftParams(epochs=1, batch_size=2),
                  on_event=steps.append, should_stop=lambda: len(steps) >= 1)
    assert 1 <= len(steps) < 6
    assert not (tmp_path / "adapter").exists()


def test_dpo_from_sft_adapter_and_reward(base: Path, sft: tuple[Path, dict, list[TrainEvent]],
                                         tmp_path: Path) -> None:
    pairs = [_pair(i) for i in range(10)]
    metrics = train_dpo(base, BASE_ID, pairs, pairs[:2], tmp_path / "dpo", DpoParams(epochs=1),
                        init_adapter=sft[0] / "adapter")
    adapter = tmp_path / "dpo" / "adapter"
    assert json.loads((adapter / "refinery.json").read_text())["kind"] == "dpo"
    assert not (adapter / "ref").exists()  # the frozen reference copy is not saved
    assert metrics["steps"] == 2

    reward = train_reward(base, BASE_ID, pairs, pairs[:4], tmp_path / "rm", DpoParams(epochs=1))
    assert 0.0 <= reward["eval_accuracy"] <= 1.0
    scores = score_pairs(base, tmp_path / "rm" / "adapter", pairs[:3])
    assert len(scores) == 3 and all(isinstance(s, float) for pair in scores for s in pair)


@pytest.fixture(scope="module")
def engine(base: Path, sft: tuple[Path, dict, list[TrainEvent]]) -> Engine:
    out = sft[0]
    engine = Engine(base, BASE_ID, max_adapters=4)
    assert engine.load_adapter("final", out / "adapter") >= 0
    engine.load_adapter("epoch1", out / "checkpoints" / "epoch-1")
    return engine


def test_engine_generates_for_each_adapter_and_base(engine: Engine) -> None:
    assert engine.adapters() == ["final", "epoch1"]
    messages = [{"role": "user", "content": "What is 3 plus 1?"}]
    for adapter in ("final", "epoch1", None):
        result = engine.generate(adapter, messages, None, GenerationParams(max_tokens=6, temperature=0))
        assert isinstance(result, Completion)
        choice = result.choices[0]
        assert isinstance(choice["message"]["content"], str)
        assert choice["finish_reason"] in ("stop", "length")
        assert result.prompt_tokens == engine.count_tokens(messages, None) > 0
        assert 0 < result.completion_tokens <= 6
    with pytest.raises(UnknownAdapter):
        engine.generate("nope", messages, None, GenerationParams(max_tokens=2))


def test_engine_prefill_stream_and_sampling(engine: Engine) -> None:
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "name": "prefill", "content": "Sure:"}]
    result = engine.generate("final", messages, None, GenerationParams(max_tokens=5, temperature=0))
    assert result.choices[0]["message"]["content"].startswith("Sure:")

    pieces = list(engine.stream("final", messages, None, GenerationParams(max_tokens=5, temperature=0)))
    assert pieces[0] == (0, "Sure:")
    streamed = "".join(delta for _, delta in pieces)
    assert streamed.startswith("Sure:")

    params = GenerationParams(max_tokens=4, temperature=1.0, top_p=0.9, n=2, seed=7)
    first = engine.generate(None, messages[:1], [WEATHER_TOOL], params)
    again = engine.generate(None, messages[:1], [WEATHER_TOOL], params)
    assert [c["index"] for c in first.choices] == [0, 1]
    assert [c["message"] for c in first.choices] == [c["message"] for c in again.choices]  # seeded


def test_engine_unload_and_replace(engine: Engine, sft: tuple[Path, dict, list[TrainEvent]]) -> None:
    engine.load_adapter("final", sft[0] / "adapter")  # same name again replaces it
    assert sorted(engine.adapters()) == ["epoch1", "final"]
    engine.unload_adapter("epoch1")
    with pytest.raises(UnknownAdapter):
        engine.unload_adapter("epoch1")
    engine.unload_adapter("final")
    assert engine.adapters() == []
    result = engine.generate(None, [{"role": "user", "content": "Hi"}], None, GenerationParams(max_tokens=3))
    assert isinstance(result.choices[0]["message"]["content"], str)
    engine.load_adapter("final", sft[0] / "adapter")
    assert engine.adapters() == ["final"]


def test_engine_evicts_least_recently_used(base: Path, sft: tuple[Path, dict, list[TrainEvent]]) -> None:
    engine = Engine(base, BASE_ID, max_adapters=2)
    for name in ("a", "b"):
        engine.load_adapter(name, sft[0] / "adapter")
    engine.generate("a", [{"role": "user", "content": "Hi"}], None, GenerationParams(max_tokens=1))  # a is fresh
    engine.load_adapter("c", sft[0] / "adapter")
    assert engine.adapters() == ["a", "c"]


def test_stop_strings_cut_and_never_stream(engine: Engine) -> None:
    """Seeded sampling repeats itself exactly, so a stop string taken from a first run must cut the second there."""
    import string

    messages = [{"role": "user", "content": "Say something long."}]
    sampling = GenerationParams(max_tokens=40, temperature=1.0, seed=0)
    free = "".join(delta for _, delta in engine.stream(None, messages, None, sampling))
    alnum = set(string.ascii_letters + string.digits)
    at = next((i for i in range(2, len(free) - 1) if free[i] in alnum and free[i + 1] in alnum), None)
    if at is None:
        pytest.skip(f"the random model produced no two ASCII letters in a row: {free!r}")
    stop = free[at:at + 2]
    cut = free[:free.index(stop)]
    params = GenerationParams(max_tokens=40, temperature=1.0, seed=0, stop=["never-there", stop])
    stopped = engine.generate(None, messages, None, params)
    assert stopped.choices[0]["finish_reason"] == "stop"
    assert stopped.choices[0]["message"]["content"] == cut.strip()
    assert "".join(delta for _, delta in engine.stream(None, messages, None, params)) == cut


def test_resolve_base_model(base: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from refinery.ml import base_models

    assert base_models.resolve_base_model(str(base), tmp_path) == base  # a local directory is used as it is
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(base_models.UnknownBaseModel, match="unknown base model 'acme/nope'"):
        base_models.resolve_base_model("acme/nope", tmp_path)

    def unreachable(*args: object, **kwargs: object) -> None:
        raise OSError("no route to host")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.model_info", unreachable)
    with pytest.raises(base_models.UnknownBaseModel, match="no route to host"):
        base_models.resolve_base_model("acme/nope", tmp_path)
    assert base_models.canonical_id("SmolLM2-135M-Instruct") == base_models.DEFAULT_BASE
    if base_models._bundled_gguf(base_models.DEFAULT_BASE) is not None:
        assert base_models.DEFAULT_BASE in base_models.known_base_models()


# ----------------------------------------------------------------------------------------- constrained decoding


def _scripted(engine: Engine, monkeypatch: pytest.MonkeyPatch, steps: list[list[str]]) -> None:
    """Replace the model: at decoding step i it prefers the texts of ``steps[i]`` in that order (the last list
    repeats), every other token far behind. Texts are single tokens of the byte-level tokenizer, or its specials."""
    import torch

    vocab = len(engine.tokenizer)

    def ids(texts: list[str]) -> list[int]:
        out: list[int] = []
        for text in texts:
            if text in engine.tokenizer.get_vocab():  # special tokens
                out.append(engine.tokenizer.convert_tokens_to_ids(text))
            else:
                out.extend(engine.tokenizer(text, add_special_tokens=False)["input_ids"])
        return out

    calls = [0]

    def forward(token_ids: list[int], cache: object) -> tuple[object, object]:
        step = min(calls[0], len(steps) - 1)
        calls[0] += 1
        logits = torch.full((vocab,), -50.0)
        for rank, token in enumerate(ids(steps[step])):
            logits[token] = 50.0 - rank
        return logits, cache

    monkeypatch.setattr(engine, "_forward", forward)


def test_json_constraint_overrides_what_the_model_prefers(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    prefers = [["<|im_end|>", "x", "}", "{"]]
    messages = [{"role": "user", "content": "Answer in JSON."}]
    _scripted(engine, monkeypatch, prefers)
    free = engine.generate(None, messages, None, GenerationParams(max_tokens=8, temperature=0))
    assert free.choices[0]["message"]["content"] == "" and free.choices[0]["finish_reason"] == "stop"

    _scripted(engine, monkeypatch, prefers)
    constrained = engine.generate(None, messages, None, GenerationParams(max_tokens=8, temperature=0, json_from=0))
    # The end of turn, "x" and "}" cannot start an object; "{" can, then "}" closes it and the answer ends.
    assert constrained.choices[0]["message"]["content"] == "{}"
    assert constrained.choices[0]["finish_reason"] == "stop" and constrained.completion_tokens == 2


def test_json_constraint_waits_for_multibyte_characters_inside_strings_only(
    engine: Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    e_acute = engine.tokenizer("é", add_special_tokens=False)["input_ids"]
    assert len(e_acute) == 2  # two UTF-8 bytes, two tokens
    first, second = (engine.tokenizer.decode([i]) for i in e_acute)
    assert first == second == "\ufffd"  # each byte alone is an incomplete character
    lead, trail = (engine.tokenizer.convert_ids_to_tokens(i) for i in e_acute)
    _scripted(engine, monkeypatch, [
        [lead, "{"],  # a half character cannot start the object
        [lead, '"'],  # nor stand where a key must begin
        [lead], [trail],  # inside the key it can, and the next byte completes it
        ['"'], [":"], ["1"], ["}"],
    ])
    params = GenerationParams(max_tokens=20, temperature=0, json_from=0)
    pieces = list(engine.stream(None, [{"role": "user", "content": "JSON"}], None, params))
    text = "".join(delta for _, delta in pieces)
    assert text == '{"é":1}' and json.loads(text) == {"é": 1}
    assert all("\ufffd" not in delta for _, delta in pieces)


def test_forced_tool_call_writes_only_the_arguments(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from refinery.ml.chat_format import shape_answer

    choice = {"type": "function", "function": {"name": "get_weather"}}
    shape = shape_answer([{"role": "user", "content": "Weather in Oslo?"}], [WEATHER_TOOL], choice)
    _scripted(engine, monkeypatch, [["<|im_end|>", "x", "}", "{"]])
    params = GenerationParams(max_tokens=8, temperature=0, json_from=shape.json_from, suffix=shape.suffix)
    result = engine.generate(None, shape.messages, shape.tools, params)
    [answer] = result.choices
    assert answer["finish_reason"] == "tool_calls"
    assert answer["message"]["content"] is None
    [call] = answer["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": "{}"}


def test_random_model_answers_are_json_objects_or_cut_by_length(engine: Engine) -> None:
    """An untrained model, sampled: every answer is a complete JSON object, or a valid start of one cut by
    max_tokens; never anything else."""
    from refinery.ml.json_prefix import is_json_object_prefix

    messages = [{"role": "user", "content": "Give me JSON."}]
    finishes = []
    for seed in range(3):
        params = GenerationParams(max_tokens=24, temperature=1.0, n=2, seed=seed, json_from=0)
        for choice in engine.generate(None, messages, None, params).choices:
            content = choice["message"]["content"]
            finishes.append(choice["finish_reason"])
            if choice["finish_reason"] == "stop":
                assert isinstance(json.loads(content), dict), content
            else:
                assert choice["finish_reason"] == "length" and is_json_object_prefix(content), content
    assert len(finishes) == 6
    with pytest.raises(ValueError, match="does not begin a JSON object"):
        engine.generate(None, [*messages, {"role": "assistant", "name": "prefill", "content": "no"}], None,
                        GenerationParams(max_tokens=2, json_from=0))


async def test_serving_forces_legacy_calls_and_streams_each_choice_whole(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """Through the HTTP handler: `function_call` forces the legacy call; a stream sends role and call in one first
    chunk (what the openpipe SDK's merge needs); JSON mode; bad choices are 400 naming the field."""
    import aiohttp
    from aiohttp import web
    from aiohttp.test_utils import TestServer
    from inference.serving import InferenceServer
    from openai.types.chat import ChatCompletionChunk
    from openpipe.merge_openai_chunks import merge_openai_chunks

    server = InferenceServer(engine, objects=None, adapters_dir=tmp_path, base_id=BASE_ID)  # type: ignore[arg-type]
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.chat)
    _scripted(engine, monkeypatch, [["<|im_end|>", "x", "}", "{"]])
    body = {"model": "openpipe:x", "messages": [{"role": "user", "content": "Weather in Oslo?"}], "max_tokens": 8,
            "functions": [WEATHER_TOOL["function"]], "function_call": {"name": "get_weather"}}
    async with TestServer(app) as ts, aiohttp.ClientSession() as http:
        url = ts.make_url("/v1/chat/completions")
        async with http.post(url, json=body) as resp:
            assert resp.status == 200
            [choice] = (await resp.json())["choices"]
        assert choice["finish_reason"] == "function_call"
        assert choice["message"]["function_call"] == {"name": "get_weather", "arguments": "{}"}
        assert "tool_calls" not in choice["message"]

        async with http.post(url, json={**body, "stream": True, "n": 2}) as resp:
            raw = (await resp.read()).decode()
        chunks = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
        assert raw.rstrip().endswith("data: [DONE]")
        for index in (0, 1):
            mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
            assert mine[0]["delta"]["role"] == "assistant"
            assert mine[0]["delta"]["function_call"] == {"name": "get_weather", "arguments": "{}"}
            assert mine[-1]["finish_reason"] == "function_call"
        merged = None
        for chunk in chunks:
            merged = merge_openai_chunks(merged, ChatCompletionChunk.model_validate(chunk))
        assert merged is not None and [c.message.function_call.name for c in merged.choices] == ["get_weather"] * 2

        json_mode = {"model": "openpipe:x", "messages": body["messages"], "max_tokens": 8,
                     "response_format": {"type": "json_object"}}
        async with http.post(url, json=json_mode) as resp:
            assert (await resp.json())["choices"][0]["message"]["content"] == "{}"

        for extra, words in (({"function_call": {"name": "nope"}}, "`nope`"),
                             ({"function_call": "required"}, "`function_call` must be"),
                             ({"tool_choice": "required", "functions": None}, "no tools")):
            async with http.post(url, json={**body, **extra}) as resp:
                assert resp.status == 400
                assert words in (await resp.json())["message"]
