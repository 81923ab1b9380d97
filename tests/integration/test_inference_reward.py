"""A reward model trained on the real base (SmolLM2-135M-Instruct) and deployed to inference ranks
held-out answers through ScoreReward: the preference set of tests/integration/test_ml_smollm2.py
(30 training pairs, 10 held out), the chosen answer above the rejected one for at least 9 of the
10, with the very scores the trainer's own evaluation computes.

Budget: about 25 s of training and a few seconds of loading on 2 idle cores.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from inference.engine import Engine
from inference.rewards import RewardModels
from inference.serving import InferenceControl, InferenceServer
from refinery.grpc_server import client_channel, start_grpc
from refinery.ml.base_models import DEFAULT_BASE, resolve_base_model
from refinery.rpc import inference_pb2, inference_pb2_grpc, models_pb2
from trainer.training import DpoParams, score_pairs, train_reward

from tests.integration.test_ml_smollm2 import CACHE, _pairs, _say
from tests.unit.dir_objects import DirObjects

pytestmark = pytest.mark.timeout(900)

TOKEN = "reward-integration-token"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[Path, Path, list]:
    base_dir = resolve_base_model("smollm2-135m-instruct", CACHE)
    pairs = _pairs()
    train, held_out = pairs[:30], pairs[30:]
    out = tmp_path_factory.mktemp("reward")
    metrics = train_reward(base_dir, DEFAULT_BASE, train, held_out, out, DpoParams())
    _say(request, f"reward model 30 pairs x 3 epochs: {metrics['seconds']:.1f}s, "
                  f"trainer's held-out accuracy {metrics['eval_accuracy']:.2f}")
    return base_dir, out / "adapter", held_out


@pytest.fixture
async def stub(trained: tuple[Path, Path, list], tmp_path: Path) -> AsyncIterator[inference_pb2_grpc.InferenceStub]:
    base_dir, adapter, _ = trained
    objects = DirObjects(tmp_path / "bucket")
    objects.put_dir(adapter, "adapters/reward-v1")
    engine = Engine(base_dir, DEFAULT_BASE)
    rewards = RewardModels(base_dir, DEFAULT_BASE, base_weights=engine.base_weights)
    control = InferenceControl()
    control.server = InferenceServer(engine, objects, tmp_path / "adapters", DEFAULT_BASE, rewards)  # type: ignore[arg-type]
    service = await start_grpc("127.0.0.1", 0, [
        lambda s: inference_pb2_grpc.add_InferenceServicer_to_server(control, s)], token=TOKEN)
    channel = client_channel(f"127.0.0.1:{service.port}", token=TOKEN)
    try:
        yield inference_pb2_grpc.InferenceStub(channel)
    finally:
        await channel.close()
        await service.stop(0)
        rewards.close()
        engine.close()


async def test_a_deployed_reward_model_ranks_held_out_answers(
    trained: tuple[Path, Path, list], stub: inference_pb2_grpc.InferenceStub, request: pytest.FixtureRequest,
) -> None:
    base_dir, adapter, held_out = trained
    loaded = await stub.LoadAdapter(models_pb2.Deployment(
        model_id="reward-v1", slug="reward-v1", base_model=DEFAULT_BASE, adapter_key="adapters/reward-v1"), timeout=300)

    async def score(messages: list[dict]) -> inference_pb2.RewardResponse:
        return await stub.ScoreReward(inference_pb2.RewardRequest(
            model_id="reward-v1", messages_json=json.dumps(messages).encode()), timeout=60)

    served: list[tuple[float, float]] = []
    started = time.perf_counter()
    for pair in held_out:
        chosen = await score(pair["messages"])
        rejected = await score([*pair["messages"][:-1], pair["rejected_message"]])
        assert 0.0 < chosen.score < 1.0 and chosen.tokens > 0
        served.append((chosen.reward, rejected.reward))
    per_call = (time.perf_counter() - started) / (2 * len(held_out))
    won = sum(c > r for c, r in served)
    _say(request, f"reward model deployed in {loaded.load_seconds:.2f}s; ScoreReward {per_call * 1000:.0f} ms a "
                  f"conversation; held-out chosen above rejected {won}/{len(served)}")
    assert won >= 9, served

    # What inference serves is what the trainer measured: the same scores, conversation by conversation.
    measured = score_pairs(base_dir, adapter, held_out)
    for (c, r), (mc, mr) in zip(served, measured, strict=True):
        assert c == pytest.approx(mc, abs=1e-3) and r == pytest.approx(mr, abs=1e-3)
