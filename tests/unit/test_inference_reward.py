"""Reward models served by inference, on a tiny random Llama: deployed through LoadAdapter, scored
through ScoreReward with the numbers the trainer's own evaluation gives, kept apart from chat (a
chat request to one is a 400 that says what it is), evicted and loaded again on demand, and every
bad request answered with the status and message a caller can act on.

Nothing is trained: the reward artifacts are random LoRA weights and score heads written the way
the trainer writes them (peft's sequence-classification adapter plus refinery.json), so their
scores differ per model and per conversation, which is all that loading and scoring need."""

from __future__ import annotations

import json
import math
import shutil
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

import grpc
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from inference.engine import Engine
from inference.restore import restore_deployments
from inference.rewards import RewardModels
from inference.serving import InferenceControl, InferenceServer
from refinery.grpc_server import client_channel, start_grpc
from refinery.ml.base_models import load_tokenizer
from refinery.ml.reward_scoring import reward_ids
from refinery.rpc import inference_pb2, inference_pb2_grpc, models_pb2, models_pb2_grpc
from trainer.training import score_pairs

from tests.unit.dir_objects import DirObjects
from tests.unit.test_ml_training_tiny import BASE_ID, WEATHER_TOOL, _tiny_base

TOKEN = "reward-test-token"


def _reward_artifact(base: Path, target: Path, seed: int) -> Path:
    """A reward model as the trainer stores one, with random (non-zero) LoRA weights and score head."""
    import torch
    from peft import LoraConfig, get_peft_model
    from refinery.ml.reward_scoring import sequence_classifier

    torch.manual_seed(seed)
    model = get_peft_model(sequence_classifier(base, load_tokenizer(base)), LoraConfig(
        r=4, lora_alpha=8, target_modules="all-linear", task_type="SEQ_CLS", init_lora_weights=False))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "modules_to_save" in name:
                param.normal_(0.0, 1.0)
    model.save_pretrained(str(target), save_embedding_layers=False)
    config = json.loads((target / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = BASE_ID
    (target / "adapter_config.json").write_text(json.dumps(config))
    (target / "refinery.json").write_text(json.dumps({"base_model": BASE_ID, "kind": "reward", "metrics": {}}))
    return target


def _chat_artifact(base: Path, target: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), LoraConfig(
        r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.save_pretrained(str(target), save_embedding_layers=False)
    config = json.loads((target / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = BASE_ID
    (target / "adapter_config.json").write_text(json.dumps(config))
    return target


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = _tiny_base(tmp_path_factory.mktemp("tiny-base"))
    made = tmp_path_factory.mktemp("artifacts")
    return {"base": base, "rm1": _reward_artifact(base, made / "rm1", 1),
            "rm2": _reward_artifact(base, made / "rm2", 2), "chat": _chat_artifact(base, made / "chat")}


@dataclass
class Served:
    server: InferenceServer
    control: InferenceControl
    stub: inference_pb2_grpc.InferenceStub
    http: TestClient
    registry: dict[str, models_pb2.Deployment]  # what the registry would answer for a model it has deployed


@pytest.fixture
async def served(artifacts: dict[str, Path], tmp_path: Path) -> AsyncIterator[Served]:
    objects = DirObjects(tmp_path / "bucket")
    for name in ("rm1", "rm2", "chat"):
        objects.put_dir(artifacts[name], f"adapters/{name}")
    engine = Engine(artifacts["base"], BASE_ID, max_adapters=4)
    rewards = RewardModels(artifacts["base"], BASE_ID, max_models=1, base_weights=engine.base_weights)
    registry: dict[str, models_pb2.Deployment] = {}

    async def lookup(model_id: str) -> models_pb2.Deployment | None:
        return registry.get(model_id)

    server = InferenceServer(engine, objects, tmp_path / "adapters", BASE_ID, rewards,  # type: ignore[arg-type]
                             lookup)
    control = InferenceControl()
    control.server = server
    grpc_service = await start_grpc("127.0.0.1", 0, [
        lambda s: inference_pb2_grpc.add_InferenceServicer_to_server(control, s)], token=TOKEN)
    channel = client_channel(f"127.0.0.1:{grpc_service.port}", token=TOKEN)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.chat)
    http = TestClient(TestServer(app))
    await http.start_server()
    try:
        yield Served(server, control, inference_pb2_grpc.InferenceStub(channel), http, registry)
    finally:
        await http.close()
        await channel.close()
        await grpc_service.stop(0)
        rewards.close()
        engine.close()


def _deployment(name: str) -> models_pb2.Deployment:
    return models_pb2.Deployment(model_id=name, project_id="p1", slug=name, base_model=BASE_ID,
                                 adapter_key=f"adapters/{name}")


def _request(model_id: str, messages: object, tools: object = None) -> inference_pb2.RewardRequest:
    return inference_pb2.RewardRequest(model_id=model_id, messages_json=json.dumps(messages).encode(),
                                       tools_json=b"" if tools is None else json.dumps(tools).encode())


def _pair(question: str, good: str, bad: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": good}],
            "rejected_message": {"role": "assistant", "content": bad}}


PAIRS = [_pair("What is the capital of France?", "Paris.", "Lyon."),
         _pair("How many legs does a spider have?", "Eight.", "Six, I think, or maybe ten.")]


async def _score(stub: inference_pb2_grpc.InferenceStub, model_id: str, messages: object,
                 tools: object = None) -> inference_pb2.RewardResponse:
    return await stub.ScoreReward(_request(model_id, messages, tools), timeout=60)


async def _refused(stub: inference_pb2_grpc.InferenceStub, request: inference_pb2.RewardRequest
                   ) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ScoreReward(request, timeout=60)
    return caught.value


async def test_a_deployed_reward_model_scores_as_the_trainer_measured(served: Served,
                                                                      artifacts: dict[str, Path]) -> None:
    await served.stub.LoadAdapter(_deployment("rm1"), timeout=60)
    expected = score_pairs(artifacts["base"], artifacts["rm1"], PAIRS)  # the trainer's held-out evaluation
    tokenizer = load_tokenizer(artifacts["base"])
    for pair, (chosen, rejected) in zip(PAIRS, expected, strict=True):
        good = await _score(served.stub, "rm1", pair["messages"])
        bad = await _score(served.stub, "rm1", [*pair["messages"][:-1], pair["rejected_message"]])
        assert good.reward == pytest.approx(chosen, abs=1e-4) and bad.reward == pytest.approx(rejected, abs=1e-4)
        assert good.score == pytest.approx(1 / (1 + math.exp(-good.reward)))
        assert 0.0 < good.score < 1.0
        assert good.tokens == len(reward_ids(tokenizer, pair["messages"], None, 1 << 16))
    assert len({round(c, 5) for c, _ in expected} | {round(r, 5) for _, r in expected}) == 4  # scores differ

    # Tools are part of what the model reads: the same answer scores differently with a tool offered.
    plain = await _score(served.stub, "rm1", PAIRS[0]["messages"])
    with_tools = await _score(served.stub, "rm1", PAIRS[0]["messages"], [WEATHER_TOOL])
    assert with_tools.tokens > plain.tokens and with_tools.reward != pytest.approx(plain.reward, abs=1e-6)


async def test_the_reward_classifier_shares_the_chat_engines_weights(served: Served) -> None:
    await served.stub.LoadAdapter(_deployment("rm1"), timeout=60)
    assert served.server.rewards is not None
    classifier = served.server.rewards._classifier
    body = getattr(classifier, classifier.base_model_prefix)
    engine_body = served.server.engine.base_weights()
    assert engine_body is not None
    shared = {name: tensor.data_ptr() for name, tensor in engine_body.items()}
    mine = {name.replace(".base_layer", ""): tensor.data_ptr() for name, tensor in body.state_dict().items()
            if "lora_" not in name}
    assert mine == shared  # every tensor of the transformer is the engine's own, not a copy


async def test_scoring_runs_on_its_own_bounded_pool(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    await served.stub.LoadAdapter(_deployment("rm1"), timeout=60)
    rewards = served.server.rewards
    assert rewards is not None
    threads: list[str] = []
    real = rewards.score

    def score(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(rewards, "score", score)
    await _score(served.stub, "rm1", PAIRS[0]["messages"])
    assert len(threads) == 1 and threads[0].startswith("inference.reward-scoring")


async def test_bad_conversations_are_invalid_arguments_that_say_why(served: Served) -> None:
    await served.stub.LoadAdapter(_deployment("rm1"), timeout=60)
    user_last = [{"role": "user", "content": "hi"}]
    cases = [
        (_request("rm1", user_last), "must end with an assistant message"),
        (_request("rm1", [*PAIRS[0]["messages"], {"role": "assistant", "name": "prefill", "content": "P"}]),
         "must end with an assistant message"),
        (_request("rm1", {"role": "assistant", "content": "x"}), "non-empty array of message objects"),
        (_request("rm1", []), "non-empty array of message objects"),
        (_request("rm1", ["hello"]), "non-empty array of message objects"),
        (_request("rm1", [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]),
         "messages[0].role must be one of"),
        (_request("rm1", [{"role": "user", "content": {"a": 1}}, {"role": "assistant", "content": "y"}]),
         "messages[0].content must be"),
        (_request("rm1", PAIRS[0]["messages"], {"type": "function"}), "tools must be an array"),
        (inference_pb2.RewardRequest(model_id="rm1", messages_json=b"[{"), "messages_json is not valid JSON"),
        (inference_pb2.RewardRequest(model_id="rm1"), "messages_json is required"),
        (_request("", PAIRS[0]["messages"]), "model_id is required"),
    ]
    for request, message in cases:
        error = await _refused(served.stub, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (message, error.details())
        assert message in (error.details() or ""), error.details()
    assert (await _score(served.stub, "rm1", PAIRS[0]["messages"])).tokens > 0  # and it still scores


async def test_unknown_chat_and_forgotten_models_are_not_found(served: Served) -> None:
    await served.stub.LoadAdapter(_deployment("chat"), timeout=60)
    await served.stub.LoadAdapter(_deployment("rm1"), timeout=60)
    messages = PAIRS[0]["messages"]
    error = await _refused(served.stub, _request("never-deployed", messages))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "no reward model never-deployed" in (error.details() or "")
    error = await _refused(served.stub, _request("chat", messages))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "is a chat model, not a reward model" in (
        error.details() or "")
    await served.stub.UnloadAdapter(inference_pb2.AdapterRef(model_id="rm1"), timeout=60)
    error = await _refused(served.stub, _request("rm1", messages))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert served.server.rewards is not None and served.server.rewards.names() == []


async def test_a_chat_request_to_a_reward_model_is_a_400_that_says_so(served: Served) -> None:
    await served.stub.LoadAdapter(_deployment("rm1"), timeout=60)
    await served.stub.LoadAdapter(_deployment("chat"), timeout=60)
    served.server.remember("rm2", "adapters/rm2", [])  # deployed, its kind known once it is loaded
    for model_id in ("rm1", "rm2"):
        for stream in (False, True):
            resp = await served.http.post("/v1/chat/completions", json={
                "model": f"openpipe:{model_id}", "max_tokens": 2, "stream": stream,
                "messages": [{"role": "user", "content": "hi"}]}, headers={"x-refinery-adapter": model_id})
            assert resp.status == 400, await resp.text()
            assert "is a reward model" in (await resp.json())["error"]["message"]
    resp = await served.http.post("/v1/chat/completions", json={
        "model": "openpipe:chat", "max_tokens": 2, "temperature": 0,
        "messages": [{"role": "user", "content": "hi"}]}, headers={"x-refinery-adapter": "chat"})
    assert resp.status == 200, await resp.text()  # the chat model beside them still answers


async def test_an_evicted_reward_model_is_loaded_again_on_demand(served: Served) -> None:
    """Room for one reward model: the second deployment evicts the first, which comes back on its
    next request, from its local copy or, that gone, from the object store, with the same scores."""
    messages = PAIRS[1]["messages"]
    await served.stub.LoadAdapter(_deployment("rm1"), timeout=60)
    first = await _score(served.stub, "rm1", messages)
    await served.stub.LoadAdapter(_deployment("rm2"), timeout=60)
    rewards = served.server.rewards
    assert rewards is not None and rewards.names() == ["rm2"]
    other = await _score(served.stub, "rm2", messages)
    assert other.reward != pytest.approx(first.reward, abs=1e-6)  # another model, another verdict
    again = await _score(served.stub, "rm1", messages)
    assert again.reward == pytest.approx(first.reward, abs=1e-5) and rewards.names() == ["rm1"]
    shutil.rmtree(served.server._dir / "rm2")
    assert (await _score(served.stub, "rm2", messages)).reward == pytest.approx(other.reward, abs=1e-5)
    assert rewards.names() == ["rm2"]


async def test_a_deployment_the_server_was_not_told_of_is_asked_of_the_registry(served: Served) -> None:
    """After a restart whose restore has not reached a model yet: the registry's word decides."""
    served.registry["rm2"] = _deployment("rm2")
    result = await _score(served.stub, "rm2", PAIRS[0]["messages"])
    assert result.tokens > 0 and "rm2" in served.server.reward_models
    served.registry["elsewhere"] = models_pb2.Deployment(model_id="elsewhere", base_model="another/base",
                                                         adapter_key="adapters/rm1")
    error = await _refused(served.stub, _request("elsewhere", PAIRS[0]["messages"]))
    assert error.code() == grpc.StatusCode.NOT_FOUND  # deployed, but on another inference's base


async def test_an_artifact_that_cannot_be_fetched_is_unavailable_not_an_error_of_the_caller(served: Served) -> None:
    served.server.remember("rm2", "adapters/missing", [])
    error = await _refused(served.stub, _request("rm2", PAIRS[0]["messages"]))
    assert error.code() == grpc.StatusCode.UNAVAILABLE and "could not be loaded again" in (error.details() or "")


class Registry(models_pb2_grpc.ModelRegistryServicer):
    def __init__(self, deployments: list[models_pb2.Deployment]) -> None:
        self.deployments = deployments

    async def Deployments(self, request, context):
        return models_pb2.DeploymentsResponse(deployments=self.deployments)


async def test_after_a_restart_reward_and_chat_deployments_answer_again(served: Served) -> None:
    registry = Registry([_deployment("chat"), _deployment("rm1")])
    service = await start_grpc("127.0.0.1", 0, [
        lambda s: models_pb2_grpc.add_ModelRegistryServicer_to_server(registry, s)], token=TOKEN)
    channel = client_channel(f"127.0.0.1:{service.port}", token=TOKEN)
    try:
        await restore_deployments(served.server, channel, attempts=3)
    finally:
        await channel.close()
        await service.stop(0)
    assert served.server.reward_models == {"rm1"} and served.server.engine.adapters() == ["chat"]
    assert (await _score(served.stub, "rm1", PAIRS[0]["messages"])).tokens > 0
    resp = await served.http.post("/v1/chat/completions", json={
        "model": "openpipe:chat", "max_tokens": 2, "temperature": 0,
        "messages": [{"role": "user", "content": "hi"}]}, headers={"x-refinery-adapter": "chat"})
    assert resp.status == 200, await resp.text()
