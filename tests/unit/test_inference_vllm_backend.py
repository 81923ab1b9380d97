"""The vLLM serving path and the backend choice, against a fake ``vllm`` package (vLLM itself is CUDA-only).

What this checks is *our* side of the contract: the SamplingParams and LoRARequests we build, the adapter
registry, how cumulative RequestOutputs become StreamPieces and usage, the error types, the sync-over-async
bridge (also through InferenceServer's HTTP handler), and which backend is chosen. It cannot check that real vLLM
behaves as the fake does: that path runs only where vLLM and a GPU exist (bench/vllm_smoke.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from refinery.ml.chat_format import render_prompt

pytest.importorskip("jinja2")

from inference import backends
from inference.engine import GenerationCancelled, GenerationParams, StreamPiece, UnknownAdapter
from inference.vllm_backend import VllmEngine, VllmUnavailable, import_vllm

BASE_ID = "test/base"
IM_END_ID, ENDOFTEXT_ID, IM_START_ID = 2, 0, 1
HELLO = [{"role": "user", "content": "Hello"}]


# --------------------------------------------------------------------------------------------- the fake vllm


class FakeTokenizer:
    """One token per character (ids are code points), plus the three ChatML specials in the vocabulary."""

    eos_token_id = IM_END_ID

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        assert add_special_tokens is False, "prompts are rendered by our template: no extra special tokens"
        return [ord(c) for c in text]

    def get_vocab(self) -> dict[str, int]:
        return {"<|im_end|>": IM_END_ID, "<|endoftext|>": ENDOFTEXT_ID, "<|im_start|>": IM_START_ID, "a": 97}


class Recorded:
    """kwargs-only stand-in for AsyncEngineArgs and SamplingParams: remembers exactly what it was given."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        for key, value in kwargs.items():
            setattr(self, key, value)


class FakeEngineArgs(Recorded):
    pass


class FakeSamplingParams(Recorded):
    pass


class FakeStructuredOutputsParams(Recorded):
    pass


@dataclass(frozen=True)
class FakeLoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


@dataclass
class FakeCompletion:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = None


@dataclass
class FakeRequestOutput:
    request_id: str
    outputs: list[FakeCompletion]
    finished: bool


@dataclass
class GenerateCall:
    prompt: dict
    sampling_params: FakeSamplingParams
    request_id: str
    lora_request: FakeLoRARequest | None


Step = list[tuple[int, str, list[int], str | None]]  # (choice index, cumulative text, cumulative ids, finish)


@dataclass
class FakeAsyncLLMEngine:
    """Records every call; ``generate`` yields scripted cumulative outputs (one script per non-warm-up request)."""

    args: FakeEngineArgs
    max_model_len: int = 4096
    calls: list[tuple] = field(default_factory=list)
    generated: list[GenerateCall] = field(default_factory=list)
    scripts: list[list[Step]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    fail_add_lora: bool = False
    fail_warm_up: bool = False
    created_on: Any = None

    instances: Any = None  # set per test by the fixture: the list every new engine is appended to
    model_len: Any = None

    @classmethod
    def from_engine_args(cls, args: FakeEngineArgs) -> FakeAsyncLLMEngine:
        engine = cls(args=args, max_model_len=cls.model_len or 4096)
        engine.created_on = asyncio.get_running_loop()  # vLLM binds its output handler to the creating loop
        cls.instances.append(engine)
        return engine

    @property
    def model_config(self) -> Any:
        return types.SimpleNamespace(max_model_len=self.max_model_len)

    def get_tokenizer(self) -> FakeTokenizer:
        return FakeTokenizer()

    async def add_lora(self, request: FakeLoRARequest) -> bool:
        self.calls.append(("add_lora", request))
        if self.fail_add_lora:
            raise ValueError("bad adapter weights")
        return True

    async def remove_lora(self, lora_id: int) -> bool:
        self.calls.append(("remove_lora", lora_id))
        return True

    def reset_prefix_cache(self) -> bool:
        self.calls.append(("reset_prefix_cache",))
        return True

    def shutdown(self) -> None:
        self.calls.append(("shutdown",))

    async def generate(self, prompt: dict, sampling_params: FakeSamplingParams, request_id: str, *,
                       lora_request: FakeLoRARequest | None = None):
        assert asyncio.get_running_loop() is self.created_on, "generate must run on the engine's own loop"
        self.generated.append(GenerateCall(prompt, sampling_params, request_id, lora_request))
        warm_up = request_id.startswith("refinery-warmup")
        if warm_up and self.fail_warm_up:
            raise RuntimeError("CUDA error: the adapter's shapes do not fit")
        if warm_up or not self.scripts:
            script: list[Step] = [[(i, "ok", [111, 107, IM_END_ID], "stop") for i in range(sampling_params.n)]]
        else:
            script = self.scripts.pop(0)
        try:
            for number, step in enumerate(script):
                await asyncio.sleep(0)
                yield FakeRequestOutput(request_id, [FakeCompletion(*c) for c in step], number == len(script) - 1)
        except GeneratorExit:
            self.aborted.append(request_id)
            raise

    def requests(self) -> list[GenerateCall]:
        """The client requests, warm-ups left out."""
        return [g for g in self.generated if not g.request_id.startswith("refinery-warmup")]


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> list[FakeAsyncLLMEngine]:
    """Installs a fake ``vllm`` (just the names the backend imports); returns the list of engines it creates."""
    instances: list[FakeAsyncLLMEngine] = []
    monkeypatch.setattr(FakeAsyncLLMEngine, "instances", instances)
    monkeypatch.setattr(FakeAsyncLLMEngine, "model_len", None)
    vllm = types.ModuleType("vllm")
    vllm.AsyncEngineArgs = FakeEngineArgs
    vllm.AsyncLLMEngine = FakeAsyncLLMEngine
    vllm.SamplingParams = FakeSamplingParams
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.StructuredOutputsParams = FakeStructuredOutputsParams
    vllm.sampling_params = sampling
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = FakeLoRARequest
    vllm.lora = lora
    lora.request = request
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", lora)
    monkeypatch.setitem(sys.modules, "vllm.lora.request", request)
    return instances


@pytest.fixture
def engine(fake_vllm: list[FakeAsyncLLMEngine], tmp_path: Path):
    eng = VllmEngine(tmp_path / "base", BASE_ID, max_adapters=3, max_loras=2, max_lora_rank=32)
    yield eng
    eng.close()


def fake(engine: VllmEngine) -> FakeAsyncLLMEngine:
    return engine._engine


def adapter_dir(root: Path, name: str, rank: int = 16, base: str = BASE_ID) -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps(
        {"base_model_name_or_path": base, "r": rank, "task_type": "CAUSAL_LM"}))
    return path


def pieces_of(engine: VllmEngine, params: GenerationParams, adapter: str | None = None,
              messages: list[dict] | None = None) -> list[StreamPiece]:
    return list(engine.stream_pieces(adapter, messages or HELLO, None, params))


# --------------------------------------------------------------------------------------------- construction


def test_module_imports_without_vllm_and_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail even where it is installed
    with pytest.raises(VllmUnavailable, match="CUDA-only on PyPI"):
        import_vllm()
    with pytest.raises(VllmUnavailable, match="REFINERY_INFERENCE_BACKEND=transformers"):
        VllmEngine(tmp_path, BASE_ID)


def test_engine_args_enable_lora_and_size_the_adapter_caches(engine: VllmEngine, tmp_path: Path) -> None:
    args = fake(engine).args.kwargs
    assert args["model"] == str(tmp_path / "base") and args["tokenizer"] == str(tmp_path / "base")
    assert args["enable_lora"] is True
    assert args["max_loras"] == 2 and args["max_lora_rank"] == 32
    assert args["max_cpu_loras"] == 3  # = max_adapters: every registered adapter stays loaded
    assert "max_model_len" not in args  # None: the model's own
    assert engine.max_context == 4096
    assert engine._stop_ids == [ENDOFTEXT_ID, IM_START_ID, IM_END_ID]


def test_max_loras_is_capped_by_max_adapters(fake_vllm: list, tmp_path: Path) -> None:
    eng = VllmEngine(tmp_path, BASE_ID, max_adapters=1, max_loras=8, max_model_len=2048,
                     engine_options={"enforce_eager": True})
    try:
        args = fake(eng).args.kwargs
        assert args["max_loras"] == 1 and args["max_cpu_loras"] == 1
        assert args["max_model_len"] == 2048 and args["enforce_eager"] is True
    finally:
        eng.close()


# --------------------------------------------------------------------------------------------- sampling


def test_sampling_params_mirror_generation_params(engine: VllmEngine) -> None:
    params = GenerationParams(max_tokens=7, temperature=0.3, top_p=0.9, stop=["END", ""], n=2, seed=42)
    fake(engine).scripts.append([[(0, "a", [97, IM_END_ID], "stop"), (1, "b", [98, IM_END_ID], "stop")]])
    pieces_of(engine, params)
    (call,) = fake(engine).requests()
    sp = call.sampling_params.kwargs
    assert sp["max_tokens"] == 7 and sp["temperature"] == 0.3 and sp["top_p"] == 0.9
    assert sp["stop"] == ["END"] and sp["n"] == 2 and sp["seed"] == 42
    assert sp["stop_token_ids"] == [ENDOFTEXT_ID, IM_START_ID, IM_END_ID]
    assert sp["skip_special_tokens"] is False and sp["spaces_between_special_tokens"] is False
    assert call.lora_request is None
    prompt, _ = render_prompt(HELLO, None)
    assert call.prompt == {"prompt_token_ids": [ord(c) for c in prompt]}  # our template, sent as token ids


def test_sampling_params_keep_the_cpu_engines_meaning_of_edge_values(engine: VllmEngine) -> None:
    pieces_of(engine, GenerationParams(temperature=0.0, top_p=0.0, seed=None))
    pieces_of(engine, GenerationParams(temperature=-1.0, top_p=1.5))
    first, second = (c.sampling_params.kwargs for c in fake(engine).requests())
    assert first["temperature"] == 0.0 and first["top_p"] == 1.0 and first["seed"] is None
    assert second["temperature"] == 0.0 and second["top_p"] == 1.0


def test_max_tokens_is_clamped_to_the_room_left_in_the_context(fake_vllm: list, tmp_path: Path) -> None:
    prompt_len = len(render_prompt(HELLO, None)[0])
    FakeAsyncLLMEngine.model_len = prompt_len + 5
    eng = VllmEngine(tmp_path, BASE_ID)
    try:
        pieces_of(eng, GenerationParams(max_tokens=100))
        assert fake(eng).requests()[0].sampling_params.max_tokens == 5
        with pytest.raises(ValueError, match="context"):
            eng.generate(None, [{"role": "user", "content": "x" * 50}], None, GenerationParams())
    finally:
        eng.close()


def test_n_below_one_is_refused_before_generating(engine: VllmEngine) -> None:
    with pytest.raises(ValueError, match="n must be at least 1"):
        engine.stream_pieces(None, HELLO, None, GenerationParams(n=0))
    assert fake(engine).requests() == []


# --------------------------------------------------------------------------------------------- adapters


def test_each_adapter_has_a_stable_lora_id_and_requests_carry_it(engine: VllmEngine, tmp_path: Path) -> None:
    a, b = adapter_dir(tmp_path, "a"), adapter_dir(tmp_path, "b")
    assert engine.load_adapter("ft-a", a) >= 0
    engine.load_adapter("ft-b", b)
    assert engine.adapters() == ["ft-a", "ft-b"]
    adds = [c[1] for c in fake(engine).calls if c[0] == "add_lora"]
    assert adds == [FakeLoRARequest("ft-a", 1, str(a.resolve())), FakeLoRARequest("ft-b", 2, str(b.resolve()))]

    # loading = registering plus a one-token warm-up through the adapter
    warm = [g for g in fake(engine).generated if g.request_id.startswith("refinery-warmup")]
    assert [g.lora_request.lora_int_id for g in warm] == [1, 2]
    assert all(g.sampling_params.max_tokens == 1 and g.sampling_params.temperature == 0.0 for g in warm)

    pieces_of(engine, GenerationParams(), adapter="ft-b")
    pieces_of(engine, GenerationParams(), adapter="ft-a")
    pieces_of(engine, GenerationParams())
    assert [c.lora_request for c in fake(engine).requests()] == [adds[1], adds[0], None]

    # reloading keeps the id, removes the old weights first and drops KV cached with them
    fake(engine).calls.clear()
    engine.load_adapter("ft-a", a)
    assert [c[0] for c in fake(engine).calls] == ["remove_lora", "reset_prefix_cache", "add_lora"]
    assert fake(engine).calls[0][1] == 1 and fake(engine).calls[2][1].lora_int_id == 1

    # unloading removes it from vLLM; loading it again later gets the same id back
    engine.unload_adapter("ft-b")
    assert ("remove_lora", 2) in fake(engine).calls and engine.adapters() == ["ft-a"]
    engine.load_adapter("ft-b", b)
    assert fake(engine).calls[-1] == ("add_lora", FakeLoRARequest("ft-b", 2, str(b.resolve())))
    assert engine.lora_id("ft-a") == 1 and engine.lora_id("ft-b") == 2 and engine.lora_id("new") == 3


def test_unknown_adapters_raise_the_cpu_engines_error_before_generating(engine: VllmEngine) -> None:
    with pytest.raises(UnknownAdapter):
        engine.stream_pieces("nope", HELLO, None, GenerationParams())
    with pytest.raises(UnknownAdapter):
        engine.stream("nope", HELLO, None, GenerationParams())
    with pytest.raises(UnknownAdapter):
        engine.generate("nope", HELLO, None, GenerationParams())
    with pytest.raises(UnknownAdapter):
        engine.unload_adapter("nope")
    assert fake(engine).generated == []


def test_least_recently_used_adapter_is_unloaded_beyond_max_adapters(engine: VllmEngine, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        engine.load_adapter(name, adapter_dir(tmp_path, name))
    pieces_of(engine, GenerationParams(), adapter="a")  # a is now the most recently used
    engine.load_adapter("d", adapter_dir(tmp_path, "d"))
    assert engine.adapters() == ["c", "a", "d"]
    assert fake(engine).calls[-1] == ("remove_lora", engine.lora_id("b"))


def test_adapter_checks_and_load_failures_surface_at_load_time(engine: VllmEngine, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_lora_rank=32"):
        engine.load_adapter("big", adapter_dir(tmp_path, "big", rank=64))
    with pytest.raises(ValueError, match="trained on"):
        engine.load_adapter("other", adapter_dir(tmp_path, "other", base="someone/else"))
    with pytest.raises(ValueError, match="not a LoRA adapter"):
        engine.load_adapter("empty", tmp_path)

    fake(engine).fail_warm_up = True
    with pytest.raises(RuntimeError, match=r"could not load adapter 'bad'.*CUDA error"):
        engine.load_adapter("bad", adapter_dir(tmp_path, "bad"))
    assert engine.adapters() == []
    assert fake(engine).calls[-1] == ("remove_lora", engine.lora_id("bad"))  # a failed warm-up leaves nothing

    fake(engine).fail_warm_up, fake(engine).fail_add_lora = False, True
    with pytest.raises(RuntimeError, match="bad adapter weights"):
        engine.load_adapter("bad", adapter_dir(tmp_path, "bad"))
    assert engine.adapters() == []


# --------------------------------------------------------------------------------------------- streaming


def test_deltas_are_computed_from_cumulative_outputs(engine: VllmEngine) -> None:
    fake(engine).scripts.append([
        [(0, "He", [72, 101], None)],
        [(0, "Hello", [72, 101, 108, 108, 111], None)],
        [(0, "Hello", [72, 101, 108, 108, 111], None)],  # a step that added nothing shows nothing
        [(0, "Hello wor", [72, 101, 108, 108, 111, 32, 119], None)],
        [(0, "Hello world", [72, 101, 108, 108, 111, 32, 119, 111, 114, IM_END_ID], "stop")],
    ])
    pieces = pieces_of(engine, GenerationParams())
    assert [p.delta for p in pieces] == ["He", "llo", " wor", "ld", ""]
    final = pieces[-1]
    assert final == StreamPiece(0, "", finish_reason="stop", completion_tokens=10, text="Hello world")
    assert engine.generate(None, HELLO, None, GenerationParams()).choices[0]["finish_reason"] == "stop"


def test_a_possible_stop_string_is_held_back_and_never_shown(engine: VllmEngine) -> None:
    fake(engine).scripts.append([
        [(0, "Hi\nUs", [1, 2, 3], None)],  # "\nUs" could become "\nUser": not shown yet
        [(0, "Hi\nUsa", [1, 2, 3, 4], None)],  # it did not
        [(0, "Hi\nUsa\nUser: more", [1, 2, 3, 4, 5, 6], "length")],  # a stop string vLLM did not cut: we do
    ])
    pieces = pieces_of(engine, GenerationParams(stop=["\nUser"]))
    assert [p.delta for p in pieces] == ["Hi", "\nUsa", ""]
    assert pieces[-1].finish_reason == "stop" and pieces[-1].text == "Hi\nUsa"
    assert "".join(p.delta for p in pieces) == pieces[-1].text


def test_length_finish_half_characters_and_empty_budget(fake_vllm: list, tmp_path: Path) -> None:
    eng = VllmEngine(tmp_path, BASE_ID)
    try:
        fake(eng).scripts.append([[(0, "ab\ufffd", [1, 2, 3], None)], [(0, "ab\ufffd", [1, 2, 3, 4], "length")]])
        pieces = pieces_of(eng, GenerationParams(max_tokens=4))
        assert [p.delta for p in pieces] == ["ab", ""]
        assert pieces[-1].finish_reason == "length" and pieces[-1].completion_tokens == 4
    finally:
        eng.close()


def test_n_choices_interleave_and_generate_orders_them(engine: VllmEngine) -> None:
    script = [
        [(1, "B", [66], None)],
        [(0, "A", [65], None)],
        [(1, "Bb", [66, 98, IM_END_ID], "stop")],
        [(0, "Aa", [65, 97], None)],
        [(0, "Aaa", [65, 97, 97], "length")],
    ]
    fake(engine).scripts.append(script)
    pieces = pieces_of(engine, GenerationParams(n=2))
    by_choice = {i: "".join(p.delta for p in pieces if p.index == i) for i in (0, 1)}
    assert by_choice == {0: "Aaa", 1: "Bb"}
    finals = {p.index: p for p in pieces if p.finish_reason}
    assert finals[0].finish_reason == "length" and finals[1].finish_reason == "stop"

    fake(engine).scripts.append(script)
    result = engine.generate(None, HELLO, None, GenerationParams(n=2))
    assert [c["index"] for c in result.choices] == [0, 1]
    assert [c["message"]["content"] for c in result.choices] == ["Aaa", "Bb"]
    assert result.completion_tokens == 3 + 3


def test_usage_counts_come_from_token_ids_and_our_template(engine: VllmEngine) -> None:
    fake(engine).scripts.append([[(0, "fine", [9, 9, IM_END_ID], "stop")]])
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How are you?"}]
    result = engine.generate(None, messages, None, GenerationParams())
    expected = len(render_prompt(messages, None)[0])  # the fake tokenizer is one token per character
    assert result.prompt_tokens == engine.count_tokens(messages, None) == expected
    assert result.completion_tokens == 3  # the stop token is counted, as the CPU engine counts it
    assert len(fake(engine).requests()[0].prompt["prompt_token_ids"]) == expected


def test_prefill_comes_first_and_tool_calls_set_the_finish_reason(engine: VllmEngine) -> None:
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    fake(engine).scripts.append([[(0, call, [1, 2, IM_END_ID], "stop")]])
    messages = [*HELLO, {"role": "assistant", "name": "prefill", "content": "Sure. "}]
    pieces = pieces_of(engine, GenerationParams(), messages=messages)
    assert pieces[0] == StreamPiece(0, "Sure. ")
    assert pieces[-1].finish_reason == "tool_calls" and pieces[-1].text == "Sure. " + call
    prompt_ids = fake(engine).requests()[0].prompt["prompt_token_ids"]
    assert "".join(map(chr, prompt_ids)).endswith("<|im_start|>assistant\nSure. ")


def test_closing_a_stream_early_aborts_the_vllm_request(engine: VllmEngine) -> None:
    fake(engine).scripts.append([[(0, "a" * k, [97] * k, None)] for k in range(1, 50)])
    stream = engine.stream(None, HELLO, None, GenerationParams())
    assert next(stream) == (0, "a")
    stream.close()
    (call,) = fake(engine).requests()
    assert fake(engine).aborted == [call.request_id]


def test_a_cancelled_generation_aborts_the_vllm_request(engine: VllmEngine) -> None:
    fake(engine).scripts.append([[(0, "a" * k, [97] * k, None)] for k in range(1, 50)])
    gone = threading.Event()
    gone.set()  # the client left before the first token
    with pytest.raises(GenerationCancelled):
        engine.generate(None, HELLO, None, GenerationParams(), gone)
    (call,) = fake(engine).requests()
    assert fake(engine).aborted == [call.request_id]


def test_an_aborted_request_is_an_error_not_a_silent_answer(engine: VllmEngine) -> None:
    fake(engine).scripts.append([[(0, "par", [1], None)], [(0, "par", [1], "abort")]])
    with pytest.raises(RuntimeError, match="abort"):
        pieces_of(engine, GenerationParams())


def test_requests_from_many_threads_run_together(engine: VllmEngine) -> None:
    results: list[str] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(engine.generate(None, HELLO, None, GenerationParams()).choices[0]["message"]["content"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors and results == ["ok"] * 8


# --------------------------------------------------------------------------------------------- through InferenceServer


async def test_inference_server_serves_the_vllm_engine(engine: VllmEngine, tmp_path: Path) -> None:
    import aiohttp
    from aiohttp import web
    from aiohttp.test_utils import TestServer
    from inference.serving import InferenceServer

    engine.load_adapter("ft-a", adapter_dir(tmp_path, "a"))
    server = InferenceServer(engine, objects=None, adapters_dir=tmp_path, base_id=BASE_ID)  # type: ignore[arg-type]
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.chat)
    fake(engine).scripts.append([[(0, "Hel", [1, 2], None)], [(0, "Hello!", [1, 2, 3, IM_END_ID], "stop")]])
    fake(engine).scripts.append([[(0, "Hel", [1, 2], None)], [(0, "Hello!", [1, 2, 3, IM_END_ID], "stop")]])
    async with TestServer(app) as ts, aiohttp.ClientSession() as http:
        headers = {"x-refinery-adapter": "ft-a"}
        body = {"model": "openpipe:x", "messages": HELLO, "max_tokens": 9}
        async with http.post(ts.make_url("/v1/chat/completions"), json=body, headers=headers) as resp:
            assert resp.status == 200
            answer = await resp.json()
        assert answer["choices"][0]["message"]["content"] == "Hello!"
        assert answer["usage"]["completion_tokens"] == 4
        assert answer["usage"]["prompt_tokens"] == len(render_prompt(HELLO, None)[0])

        stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        async with http.post(ts.make_url("/v1/chat/completions"), json=stream_body, headers=headers) as resp:
            raw = (await resp.read()).decode()
        chunks = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert text == "Hello!" and chunks[-1]["usage"]["completion_tokens"] == 4

        unknown = {"x-refinery-adapter": "missing"}
        async with http.post(ts.make_url("/v1/chat/completions"), json=body, headers=unknown) as resp:
            assert resp.status == 404
    assert [c.lora_request.lora_name for c in fake(engine).requests()] == ["ft-a", "ft-a"]
    assert fake(engine).requests()[0].sampling_params.max_tokens == 9


# --------------------------------------------------------------------------------------------- backend choice


def test_auto_picks_transformers_without_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    monkeypatch.setattr(backends, "cuda_available", lambda: True)
    assert backends.vllm_installed() is False
    assert backends.choose_backend("auto") == "transformers"
    assert backends.choose_backend("transformers") == "transformers"
    with pytest.raises(VllmUnavailable, match=r"REFINERY_INFERENCE_BACKEND=vllm.*not installed"):
        backends.choose_backend("vllm")


def test_auto_picks_vllm_only_with_cuda(fake_vllm: list, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "vllm_installed", lambda: True)
    monkeypatch.setattr(backends, "cuda_available", lambda: False)
    assert backends.choose_backend("auto") == "transformers"
    assert backends.choose_backend("vllm") == "vllm"  # asked for explicitly: no CUDA check (ROCm/CPU builds)
    monkeypatch.setattr(backends, "cuda_available", lambda: True)
    assert backends.choose_backend("auto") == "vllm"
    with pytest.raises(ValueError, match="unknown inference backend"):
        backends.choose_backend("tensorrt")


def test_build_engine_follows_the_setting(fake_vllm: list, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import inference.engine
    from inference.settings import InferenceSettings

    built: list[tuple] = []
    monkeypatch.setattr(inference.engine, "Engine", lambda *args: built.append(args) or "cpu-engine")
    monkeypatch.setenv("REFINERY_INFERENCE_BACKEND", "transformers")
    monkeypatch.setenv("REFINERY_INFERENCE_BASE_MODEL", BASE_ID)
    assert backends.build_engine(InferenceSettings(), tmp_path) == "cpu-engine"
    assert built == [(tmp_path, BASE_ID, 32)]

    monkeypatch.setattr(backends, "vllm_installed", lambda: True)
    monkeypatch.setenv("REFINERY_INFERENCE_BACKEND", "vllm")
    monkeypatch.setenv("REFINERY_INFERENCE_VLLM_MAX_LORA_RANK", "128")
    monkeypatch.setenv("REFINERY_INFERENCE_VLLM_GPU_MEMORY_UTILIZATION", "0.5")
    eng = backends.build_engine(InferenceSettings(), tmp_path)
    try:
        assert isinstance(eng, VllmEngine)
        args = fake(eng).args.kwargs
        assert args["max_lora_rank"] == 128 and args["gpu_memory_utilization"] == 0.5 and args["max_loras"] == 8
    finally:
        eng.close()


def test_backend_setting_rejects_unknown_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from inference.settings import InferenceSettings
    from pydantic import ValidationError

    monkeypatch.delenv("REFINERY_INFERENCE_BACKEND", raising=False)
    assert InferenceSettings().backend == "auto"
    monkeypatch.setenv("REFINERY_INFERENCE_BACKEND", "cuda")
    with pytest.raises(ValidationError):
        InferenceSettings()


# --------------------------------------------------------------------------------------------- answer shape


def test_json_answers_use_vllms_structured_outputs_and_get_their_suffix(engine: VllmEngine) -> None:
    params = GenerationParams(json_from=0, suffix="}\n</tool_call>")
    fake(engine).scripts.append([[(0, '{"a": 1}', [1, 2, IM_END_ID], "stop")]])
    finals = [p for p in pieces_of(engine, params) if p.finish_reason]
    (call,) = fake(engine).requests()
    constraint = call.sampling_params.kwargs["structured_outputs"]
    assert isinstance(constraint, FakeStructuredOutputsParams) and constraint.kwargs == {"json_object": True}
    assert finals[0].text == '{"a": 1}}\n</tool_call>'
    # Cut off by max_tokens, the object is not complete: nothing is closed for it.
    fake(engine).scripts.append([[(0, '{"a": ', [1, 2], "length")]])
    finals = [p for p in pieces_of(engine, params) if p.finish_reason]
    assert finals[0].text == '{"a": ' and finals[0].finish_reason == "length"
    # Without a JSON answer there is no constraint.
    pieces_of(engine, GenerationParams())
    assert "structured_outputs" not in fake(engine).requests()[-1].sampling_params.kwargs


def test_a_json_answer_must_start_where_generation_starts(engine: VllmEngine) -> None:
    with pytest.raises(ValueError, match="after the prefill"):
        engine.stream_pieces(None, HELLO, None, GenerationParams(json_from=3))
    assert fake(engine).requests() == []


def test_tool_choice_none_keeps_a_call_as_text(engine: VllmEngine) -> None:
    call_text = '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'
    fake(engine).scripts.append([[(0, call_text, [1, IM_END_ID], "stop")]])
    completion = engine.generate(None, HELLO, None, GenerationParams(tool_calls=False))
    assert completion.choices[0]["finish_reason"] == "stop"
    assert "tool_calls" not in completion.choices[0]["message"] or not completion.choices[0]["message"]["tool_calls"]
    fake(engine).scripts.append([[(0, call_text, [1, IM_END_ID], "stop")]])
    completion = engine.generate(None, HELLO, None, GenerationParams())
    assert completion.choices[0]["finish_reason"] == "tool_calls"
    assert completion.choices[0]["message"]["tool_calls"][0]["function"]["name"] == "f"
