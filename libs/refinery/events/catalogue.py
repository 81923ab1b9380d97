"""Every event on the bus, in one list: its topic, type, data model, producers, consumers and key.

Topics and event schemas are a public interface for downstream analytics. This list is the single
place that says which event travels where, who writes it and who reads it inside the platform; the
AsyncAPI document (`refinery.events.asyncapi`, `refinery asyncapi`, `GET /asyncapi.json`,
`docs/asyncapi.json`) is generated from it, and a unit test fails when an event type defined in
`refinery.events` is missing here. Adding an event means adding a line below.

`key` is the Kafka record key (it picks the partition, so it is what keeps events in order);
`aggregate_id` is what the envelope's `aggregate_id` holds. They differ where a stream rides on
another key's partition (request logs, the trainer's per-job stream).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from pydantic import BaseModel

from refinery.config import (
    CRITERIA_TOPIC,
    DATASETS_TOPIC,
    DEAD_LETTERS_TOPIC,
    EVALS_TOPIC,
    MODELS_TOPIC,
    PROJECTS_TOPIC,
    REQUEST_LOGS_TOPIC,
)
from refinery.events import criteria as cr
from refinery.events import datasets as ds
from refinery.events import dead_letters as dl
from refinery.events import evals as ev
from refinery.events import models as md
from refinery.events import projects as pj
from refinery.events import request_logs as rl

GATEWAY = "gateway"
PROXY_ROUTER = "proxy-router"
LOG_INGEST = "log-ingest"
DATASET = "dataset"
MODEL_REGISTRY = "model-registry"
TRAINER = "trainer"
CRITERIA_JUDGE = "criteria-judge"
EVAL = "eval"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    description: str


@dataclass(frozen=True)
class EventSpec:
    topic: str
    type: str
    data: builtins.type[BaseModel]
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    key: str
    aggregate_id: str
    description: str


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        REQUEST_LOGS_TOPIC, "project id",
        "Every logged LLM call and every metadata change to logged calls. Keyed by project id, so a "
        "project's logs and the updates to them stay in order on one partition.",
    ),
    TopicSpec(
        PROJECTS_TOPIC, "project id",
        "Projects, their API keys (as SHA-256 hashes) and provider settings (keys encrypted), written by the "
        "gateway through its outbox.",
    ),
    TopicSpec(
        MODELS_TOPIC, "model id",
        "A fine-tuned model's whole life: the registry's model and training requests, the trainer's progress "
        "and outcome. Keyed by model id, so one model's events stay in order.",
    ),
    TopicSpec(
        DATASETS_TOPIC, "dataset id",
        "Datasets and their entries (whole, in batches), pruning rules, import rules, uploads and snapshots, "
        "written by the dataset service through its outbox. Keyed by dataset id; a dataset's events carry "
        "consecutive versions.",
    ),
    TopicSpec(
        CRITERIA_TOPIC, "criterion id",
        "Criteria (LLM judges and reward-model criteria), their versions, their alignment sets with the human "
        "labels, and the judge's verdict on every row under every version, written by criteria-judge through "
        "its outbox. Keyed by criterion id; a criterion's events carry consecutive versions.",
    ),
    TopicSpec(
        EVALS_TOPIC, "eval id",
        "Evaluations over a dataset's TEST split: each eval's creation with its rows, the models added, every "
        "output generated, every judgement or grade, and its completion or failure, written by eval through its "
        "outbox. Keyed by eval id; an eval's events carry consecutive versions.",
    ),
    TopicSpec(
        DEAD_LETTERS_TOPIC, "dead-letter id",
        "Records a service gave up on for good (undecodable, refused by a store, a handler failing while the "
        "service is healthy), each with its reason and the record itself, and each replay of one. Listed and "
        "replayed through `GET /admin/v1/dead-letters` and `refinery dead-letters`.",
    ),
)


def _request_logs() -> list[EventSpec]:
    t = REQUEST_LOGS_TOPIC
    return [
        EventSpec(t, rl.RECORDED_V2, rl.RequestLogRecordedV2, (GATEWAY, PROXY_ROUTER), (LOG_INGEST, DATASET),
                  "project id", "log id",
                  "One logged LLM call, as the client sent and received it: reported (`/report`, "
                  "`/report-anthropic`) by the gateway or proxied by proxy-router. Its metadata is "
                  "`req_payload.metadata` with `metadata_overrides` (tags; null deletes a key) merged on top. "
                  "log-ingest stores it; the dataset service applies standing import rules to it."),
        EventSpec(t, rl.RECORDED, rl.RequestLogRecorded, (), (LOG_INGEST, DATASET),
                  "project id", "log id",
                  "The first version of a logged call, with the merged `metadata` beside the request that "
                  "already held it. No longer written; still read (records on the topic, dead letters)."),
        EventSpec(t, rl.METADATA_UPDATED, rl.RequestLogMetadataUpdated, (LOG_INGEST,), (LOG_INGEST,),
                  "project id", "project id",
                  "Metadata merged into the exact set of logs that matched an update filter; a null value "
                  "deletes the key."),
        EventSpec(t, rl.READ_BARRIER, rl.ReadBarrier, (GATEWAY,), (),
                  "no key; one copy is written to every partition", "\"gateway\" (project_id is empty)",
                  "Written by a starting gateway to every partition so reads can be bound to everything "
                  "acknowledged before it. Carries no data; every consumer skips it."),
    ]


def _projects() -> list[EventSpec]:
    t, key = PROJECTS_TOPIC, "project id"
    return [
        EventSpec(t, pj.PROJECT_CREATED, pj.ProjectCreated, (GATEWAY,), (), key, key, "A project was created."),
        EventSpec(t, pj.API_KEY_ISSUED, pj.ApiKeyIssued, (GATEWAY,), (), key, key,
                  "An API key was issued to a project; only its SHA-256 hash and first characters travel."),
        EventSpec(t, pj.API_KEY_REVOKED, pj.ApiKeyRevoked, (GATEWAY,), (), key, key,
                  "An API key of a project was revoked: it no longer authenticates."),
        EventSpec(t, pj.PROVIDER_CONFIGURED, pj.ProviderConfigured, (GATEWAY,), (), key, key,
                  "A project's upstream provider (base URL, encrypted API key) was set."),
    ]


def _models() -> list[EventSpec]:
    t, key = MODELS_TOPIC, "model id"
    job = "\"training-<model id>\" (the trainer's per-job stream)"
    registry: list[tuple[str, type[BaseModel], tuple[str, ...], str]] = [
        (md.MODEL_CREATED, md.ModelCreated, (DATASET,),
         "A model was requested from a dataset; the dataset service counts it as a fine-tune of that dataset."),
        (md.MODEL_STATUS_CHANGED, md.ModelStatusChanged, (),
         "The model's status changed (QUEUED, PROVISIONING, TRAINING, DEPLOYED, ERROR)."),
        (md.MODEL_DEPLOYED, md.ModelDeployed, (EVAL,),
         "The trained adapter is served by inference; evals with autoAddModels on its dataset add it."),
        (md.MODEL_DELETED, md.ModelDeleted, (TRAINER,), "The model was deleted; the trainer stops its job."),
        (md.TRAINING_REQUESTED, md.TrainingRequested, (TRAINER,),
         "Everything the trainer needs to train the model (dataset snapshot, base model, hyperparameters)."),
        (md.TRAINING_CANCEL_REQUESTED, md.TrainingCancelRequested, (TRAINER,), "The job should stop."),
    ]
    trainer: list[tuple[str, type[BaseModel], str]] = [
        (md.TRAINING_STARTED, md.TrainingStarted, "A training phase (sft, dpo, reward) started."),
        (md.TRAINING_PROGRESSED, md.TrainingProgressed, "One optimiser step or evaluation, with its metrics."),
        (md.TRAINING_CHECKPOINT_SAVED, md.TrainingCheckpointSaved, "A checkpoint was saved after an epoch."),
        (md.TRAINING_COMPLETED, md.TrainingCompleted, "Training finished; the adapter is in object storage."),
        (md.TRAINING_FAILED, md.TrainingFailed, "Training failed or was cancelled."),
        (md.TRAINING_REQUEUED, md.TrainingRequeued,
         "An attempt ended without an outcome (a crash, or a trainer stopping); the job runs again."),
    ]
    return [
        *(EventSpec(t, type_, data, (MODEL_REGISTRY,), consumers, key, "model id", text)
          for type_, data, consumers, text in registry),
        *(EventSpec(t, type_, data, (TRAINER,), (MODEL_REGISTRY,), key, job, text)
          for type_, data, text in trainer),
    ]


def _datasets() -> list[EventSpec]:
    t, key = DATASETS_TOPIC, "dataset id"
    items: list[tuple[str, type[BaseModel], str]] = [
        (ds.DATASET_CREATED, ds.DatasetCreated, "A dataset was created."),
        (ds.DATASET_DELETED, ds.DatasetDeleted, "A dataset was deleted."),
        (ds.ENTRIES_ADDED, ds.EntriesAdded,
         "Entries were added (from the API, an upload, a log import or a standing rule), whole, in batches."),
        (ds.ENTRY_UPDATED, ds.EntryUpdated, "An entry was edited; the whole new entry."),
        (ds.ENTRY_DELETED, ds.EntryDeleted, "An entry was removed."),
        (ds.ENTRY_RELABELED, ds.EntryRelabeled, "A relabel job regenerated an entry's output."),
        (ds.PRUNING_RULE_ADDED, ds.PruningRuleAdded, "A pruning rule (static text removed from inputs) was added."),
        (ds.PRUNING_RULE_DELETED, ds.PruningRuleDeleted, "A pruning rule was removed."),
        (ds.IMPORT_RULE_CREATED, ds.ImportRuleCreated, "A standing import rule (log-search filters) was created."),
        (ds.IMPORT_RULE_DELETED, ds.ImportRuleDeleted, "A standing import rule was removed."),
        (ds.UPLOAD_FINISHED, ds.UploadFinished, "A JSONL upload was validated; counts and the first errors."),
        (ds.SNAPSHOT_CREATED, ds.SnapshotCreated,
         "The dataset was frozen into an immutable JSONL object named by its SHA-256."),
    ]
    return [EventSpec(t, type_, data, (DATASET,), (), key, key, text) for type_, data, text in items]


def _criteria() -> list[EventSpec]:
    t, key = CRITERIA_TOPIC, "criterion id"
    items: list[tuple[str, type[BaseModel], str]] = [
        (cr.CRITERION_CREATED, cr.CriterionCreated, "A criterion was created with its first version."),
        (cr.CRITERION_VERSION_PUBLISHED, cr.CriterionVersionPublished,
         "A new version of a criterion (prompt, judge model, templated variables or reward model changed); older "
         "versions stay callable as `name@vN`."),
        (cr.CRITERION_DELETED, cr.CriterionDeleted, "A criterion was deleted; its name is free again."),
        (cr.ALIGNMENT_ROWS_ADDED, cr.AlignmentRowsAdded,
         "Rows were added to a criterion's alignment set (from JSONL or a dataset sample), whole, in batches."),
        (cr.ALIGNMENT_ROW_LABELED, cr.AlignmentRowLabeled, "A human labeled an alignment row PASS, FAIL or SKIP, "
         "or cleared its label."),
        (cr.JUDGEMENT_RECORDED, cr.JudgementRecorded,
         "The judge's verdict (PASS, FAIL or ERROR, score, explanation) on one alignment row under one version."),
    ]
    return [EventSpec(t, type_, data, (CRITERIA_JUDGE,), (), key, key, text) for type_, data, text in items]


def _evals() -> list[EventSpec]:
    t, key = EVALS_TOPIC, "eval id"
    items: list[tuple[str, type[BaseModel], str]] = [
        (ev.EVAL_CREATED, ev.EvalCreated, "An eval was created (type, models, judge, criterion or grader)."),
        (ev.EVAL_ROWS_ADDED, ev.EvalRowsAdded, "TEST rows the eval covers, whole, in batches."),
        (ev.EVAL_MODELS_ADDED, ev.EvalModelsAdded,
         "Models were added to an eval (by request, or on reaching DEPLOYED); only their work runs."),
        (ev.EVAL_OUTPUT_GENERATED, ev.EvalOutputGenerated,
         "One model's output for one row, with its latency and cost, or the error that stopped it."),
        (ev.EVAL_JUDGEMENT_RECORDED, ev.EvalJudgementRecorded,
         "A judgement of one row: a pair compared (head-to-head), an output judged by a criterion, or graded by "
         "code; with the reasoning or the error."),
        (ev.EVAL_COMPLETED, ev.EvalCompleted, "Every output and judgement of the eval is done; the results."),
        (ev.EVAL_FAILED, ev.EvalFailed, "The eval could not run on (its dataset or criterion went away)."),
        (ev.EVAL_DELETED, ev.EvalDeleted, "An eval was deleted."),
    ]
    return [EventSpec(t, type_, data, (EVAL,), (), key, key, text) for type_, data, text in items]


def _dead_letters() -> list[EventSpec]:
    t, key = DEAD_LETTERS_TOPIC, "dead-letter id"
    writers = (GATEWAY, PROXY_ROUTER, LOG_INGEST, DATASET, MODEL_REGISTRY, TRAINER, CRITERIA_JUDGE, EVAL)
    return [
        EventSpec(t, dl.DEAD_LETTER_RECORDED, dl.DeadLetterRecorded, writers, (GATEWAY,), key, key,
                  "A record was set aside for good, with the reason; the stream behind it went on."),
        EventSpec(t, dl.DEAD_LETTER_REPLAYED, dl.DeadLetterReplayed, (GATEWAY,), (GATEWAY,), key, key,
                  "An operator replayed a dead letter (as it was, or fixed) onto its topic."),
    ]


CATALOGUE: tuple[EventSpec, ...] = (*_request_logs(), *_projects(), *_models(), *_datasets(), *_criteria(),
                                    *_evals(), *_dead_letters())


def events_of(topic: str) -> list[EventSpec]:
    return [e for e in CATALOGUE if e.topic == topic]


def by_type() -> dict[str, EventSpec]:
    return {e.type: e for e in CATALOGUE}
