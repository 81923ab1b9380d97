"""The REST shape of models: `POST /models` bodies checked into typed requests (first mistake named,
in order), the typed request as the trainer's parameters, and typed models rendered as the API's JSON."""

from __future__ import annotations

import orjson
import pytest
from gateway.models_wire import (
    InvalidModel,
    checkpoint_out,
    create_request,
    event_out,
    finetune_create_body,
    finetune_out,
    model_out,
)
from model_registry.validation import check_create, preference_params, sft_params
from refinery.rpc import models_pb2

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
SFT = {"provider": "openpipe", "baseModel": BASE}


def _body(**config: object) -> dict:
    return {"datasetId": "ds1", "slug": "m-1", "trainingConfig": {**SFT, **config}}


@pytest.mark.parametrize(("body", "message"), [
    ([1], "the body must be a JSON object"),
    ({}, "datasetId is required"),
    ({"datasetId": "ds1", "slug": "no spaces!"}, "slug must be 1-64 letters"),
    ({"datasetId": "ds1", "slug": "s"}, "trainingConfig is required"),
    ({"datasetId": "ds1", "slug": "s", "trainingConfig": {"provider": "x"}}, "trainingConfig.provider must be one of"),
    ({"datasetId": "ds1", "slug": "s", "trainingConfig": {"provider": "openai"}},
     "trainingConfig.provider 'openai' fine-tunes on a hosted service"),
    ({"datasetId": "ds1", "slug": "s", "trainingConfig": {"provider": "openpipe", "baseModel": " "}},
     "trainingConfig.baseModel is required"),
    (_body(extra=1), "trainingConfig has unknown fields: extra"),
    (_body(enable_sft="yes"), "enable_sft and enable_preference_tuning must be booleans"),
    (_body(preference_hyperparameters={"num_epochs": 1}),
     "preference_hyperparameters were given but enable_preference_tuning is false"),
    (_body(enable_sft=False, enable_preference_tuning=False),
     "enable_sft and enable_preference_tuning are both false: nothing to train"),
    (_body(sft_hyperparameters={"num_epochs": 0}), "sft_hyperparameters.num_epochs must be between 1 and 50"),
    (_body(sft_hyperparameters={"num_epochs": 1.5}), "sft_hyperparameters.num_epochs must be a whole number"),
    (_body(sft_hyperparameters={"batch_size": True}), "sft_hyperparameters.batch_size must be a number"),
    (_body(enable_preference_tuning=True, preference_hyperparameters={"variant": "X"}),
     "preference_hyperparameters.variant must be one of DPO, APO Zero"),
    ({**_body(), "pruningRuleIds": [1]}, "pruningRuleIds must be a list of pruning rule ids"),
    ({**_body(), "defaultTemperature": 3}, "defaultTemperature must be a number between 0 and 2"),
    ({"datasetId": "d", "slug": "s", "trainingConfig": {"provider": "openpipeReward", "baseModel": BASE,
                                                        "hyperparameters": {"num_epochs": 99}}},
     "hyperparameters.num_epochs must be between 1 and 50"),
])
def test_the_first_mistake_is_named(body: object, message: str) -> None:
    with pytest.raises(InvalidModel) as err:
        create_request("p1", body)
    assert str(err.value).startswith(message), str(err.value)


def test_an_sft_then_dpo_body_becomes_the_trainers_parameters() -> None:
    body = {"datasetId": "ds1", "slug": "m-1", "defaultTemperature": 0, "pruningRuleIds": [],
            "trainingConfig": {**SFT, "baseModel": f" {BASE} ", "enable_preference_tuning": True,
                               "sft_hyperparameters": {"batch_size": "auto", "num_epochs": 3.0},
                               "preference_hyperparameters": {"variant": "APO Zero", "training_beta": 0.2}}}
    req = create_request("p1", body)
    check_create(req)
    assert (req.project_id, req.slug, req.dataset_id, req.kind) == ("p1", "m-1", "ds1", "openpipe")
    assert req.base_model == BASE
    assert req.enable_sft and req.enable_preference_tuning
    assert sft_params(req.sft) == {"batch_size": "auto", "num_epochs": 3}
    assert preference_params(req) == {"variant": "APO Zero", "training_beta": 0.2}
    assert req.HasField("pruning_rule_ids") and list(req.pruning_rule_ids.ids) == []  # given, empty: no rules
    assert req.HasField("default_temperature") and req.default_temperature == 0.0
    assert orjson.loads(req.training_config_json) == body["trainingConfig"]  # kept as sent
    assert orjson.loads(req.hyperparameters_json) == {"batch_size": "auto", "num_epochs": 3.0,
                                                      "preference_tuning_variant": "APO Zero",
                                                      "preference_tuning_training_beta": 0.2}


def test_legacy_hyperparameters_and_reward_models() -> None:
    legacy = create_request("p1", _body(hyperparameters={"batch_size": 4, "is_preference_tuning_enabled": True,
                                                         "preference_tuning_num_epochs": 2}))
    assert sft_params(legacy.sft) == {"batch_size": 4}
    assert preference_params(legacy) == {"variant": "DPO", "num_epochs": 2}
    assert not legacy.HasField("pruning_rule_ids") and not legacy.HasField("default_temperature")

    reward = create_request("p1", {"datasetId": "d", "slug": "r", "trainingConfig": {
        "provider": "openpipeReward", "baseModel": BASE, "hyperparameters": {"learning_rate_multiplier": 1}}})
    assert reward.kind == "openpipeReward" and not reward.enable_sft and not reward.enable_preference_tuning
    assert sft_params(reward.sft) == {"learning_rate_multiplier": 1.0} and preference_params(reward) == {}
    assert orjson.loads(reward.hyperparameters_json) == {"learning_rate_multiplier": 1.0}


def test_the_deprecated_create_body_translates() -> None:
    assert finetune_create_body({"datasetId": "d", "slug": "s", "baseModel": BASE, "overrides": {"num_epochs": 1}}) == {
        "datasetId": "d", "slug": "s",
        "trainingConfig": {"provider": "openpipe", "baseModel": BASE, "hyperparameters": {"num_epochs": 1}}}
    assert finetune_create_body([1])["trainingConfig"] == {"provider": "openpipe", "baseModel": None}


MODEL = models_pb2.Model(
    id="0b8e", slug="m-1", dataset_id="ds1", base_model=BASE, status="QUEUED", pruning_rules=["rule"],
    snapshot_id="snap", created_at=1_700_000_000_000.0, updated_at=1_700_000_001_500.0,
    hyperparameters_json=b'{"num_epochs":2}', training_config_json=b'{"provider":"openpipe"}', metrics_json=b"{}")


def test_a_model_renders_as_the_documented_object() -> None:
    assert orjson.loads(orjson.dumps(model_out(MODEL))) == {
        "id": "m-1", "name": "m-1", "object": "model", "description": None,
        "created": "2023-11-14T22:13:20.000Z", "updated": "2023-11-14T22:13:21.500Z",
        "openpipe": {"baseModel": BASE, "hyperparameters": {"num_epochs": 2}, "status": "QUEUED",
                     "datasetId": "ds1", "errorMessage": None},
        "contextWindow": 8192, "maxCompletionTokens": 2048, "capabilities": ["chat", "tools", "json"],
        "pricing": {"chatIn": 0.0, "chatOut": 0.0}, "owned_by": "refinery",
        "refinery": {"modelId": "0b8e", "trainingConfig": {"provider": "openpipe"}, "defaultTemperature": None,
                     "pruningRules": ["rule"], "snapshotId": "snap", "metrics": {}},
    }
    failed = models_pb2.Model(status="PROVISIONING", error_message="", default_temperature=0.0)
    assert model_out(failed)["openpipe"]["errorMessage"] == ""  # set, though empty
    assert model_out(failed)["refinery"]["defaultTemperature"] == 0.0
    assert finetune_out(MODEL) == {"id": "0b8e", "status": "PENDING", "slug": "m-1", "baseModel": BASE,
                                   "errorMessage": None, "datasetId": "ds1", "createdAt": "2023-11-14T22:13:20.000Z"}
    assert finetune_out(failed)["status"] == "TRANSFERRING_TRAINING_DATA"


def test_events_and_checkpoints_render_in_openais_fine_tuning_shape() -> None:
    event = models_pb2.TrainingEvent(id="ev1", created_at=1_700_000_000_999.0, level="info", message="step 1",
                                     type="metrics", data_json=b'{"step":1}')
    assert orjson.loads(orjson.dumps(event_out(event))) == {
        "object": "fine_tuning.job.event", "id": "ev1", "created_at": 1_700_000_000, "level": "info",
        "message": "step 1", "type": "metrics", "data": {"step": 1}}
    cp = models_pb2.Checkpoint(checkpoint_key="k", created_at=1_700_000_000_000.0, phase="dpo", epoch=2, step=9)
    assert checkpoint_out("m-1", cp) == {
        "object": "fine_tuning.job.checkpoint", "id": "k", "created_at": 1_700_000_000,
        "fine_tuned_model_checkpoint": "m-1:dpo:epoch-2", "step_number": 9, "phase": "dpo", "epoch": 2}
