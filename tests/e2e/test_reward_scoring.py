"""A reward model trained through `POST /models` (the session's `sdk-reward-v1`, kind `openpipeReward`)
is DEPLOYED only once inference has loaded it: it then scores conversations over inference's
ScoreReward, and a chat completion to it is a 400 that says it is a reward model, never a 500."""

from __future__ import annotations

import json

import grpc
import httpx
from refinery import internal_auth
from refinery.rpc import inference_pb2, inference_pb2_grpc, models_pb2, models_pb2_grpc
from refinery.stack.platform import Stack


def _conversation(n: int, answer: str) -> list[dict]:
    return [{"role": "system", "content": "You count things"}, {"role": "user", "content": f"count to {n}"},
            {"role": "assistant", "content": answer}]


def test_a_deployed_reward_model_scores_and_refuses_chat(stack: Stack, api: httpx.Client,
                                                         sdk_reward_model: str) -> None:
    metadata = ((internal_auth.HEADER, stack.internal_token),)
    with grpc.insecure_channel(f"127.0.0.1:{stack.ports['registry_grpc']}") as registry:
        deployments = models_pb2_grpc.ModelRegistryStub(registry).Deployments(
            models_pb2.DeploymentsRequest(), timeout=10, metadata=metadata).deployments
    model_id = next(d.model_id for d in deployments if d.slug == sdk_reward_model)

    with grpc.insecure_channel(f"127.0.0.1:{stack.ports['inference_grpc']}") as channel:
        inference = inference_pb2_grpc.InferenceStub(channel)

        def score(messages: object) -> inference_pb2.RewardResponse:
            return inference.ScoreReward(inference_pb2.RewardRequest(
                model_id=model_id, messages_json=json.dumps(messages).encode()), timeout=60, metadata=metadata)

        counted = score(_conversation(12, ", ".join(str(i) for i in range(1, 13))))
        refused = score(_conversation(12, "I would rather not count."))
        for result in (counted, refused):
            assert 0.0 < result.score < 1.0 and result.tokens > 10
        assert counted.reward != refused.reward  # the model reads the answer, not just the prompt

        try:
            score([{"role": "user", "content": "count to 3"}])
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc
            assert "must end with an assistant message" in (exc.details() or "")
        else:
            raise AssertionError("a conversation without an answer to score was scored")

    resp = api.post("/chat/completions", json={"model": f"openpipe:{sdk_reward_model}", "max_tokens": 5,
                                               "messages": [{"role": "user", "content": "count to 3"}]})
    assert resp.status_code == 400, resp.text
    assert "is a reward model" in resp.text
