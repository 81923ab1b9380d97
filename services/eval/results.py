"""An eval's standings, computed from its recorded outputs and judgements (pure, no I/O).

One place decides what the numbers mean, so the API's results, the matrix and the results carried by
`eval.completed` always agree:
- head_to_head: a model's win rate is the mean of its shares (1 won, 0.5 tie, 0 lost) over the
  comparisons it took part in; `matrix[a][b]` is the same mean restricted to comparisons with b;
- criterion: the pass rate, passes / judged rows;
- code: the mean grade over graded rows.
Judgements that failed are left out of the ratios and counted in `errors` (rows whose output,
judgement or grade failed, each row once); a comparison that failed only because one side had no
output counts against that side alone. Cost is what generating the model's outputs cost, latency the
median of its generated outputs' latencies (none for `dataset`, whose outputs are not generated).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from refinery.events.evals import EvalType

from eval.definitions import DATASET_MODEL, pairs


@dataclass(frozen=True)
class OutputFact:
    row_id: str
    model: str
    ok: bool
    latency_ms: float | None
    cost_usd: float


@dataclass(frozen=True)
class JudgementFact:
    row_id: str
    model: str
    opponent: str | None  # head_to_head: the second of the pair
    score: float | None  # None: the judgement failed


@dataclass(frozen=True)
class ModelResult:
    model: str
    score: float | None
    errors: int
    cost_usd: float
    latency_ms_p50: float | None
    comparisons: int
    scored: int


@dataclass(frozen=True)
class MatrixCell:
    model: str
    opponent: str
    win_rate: float | None
    comparisons: int


@dataclass(frozen=True)
class Results:
    results: list[ModelResult]
    matrix: list[MatrixCell]
    comparisons: int  # head_to_head: comparisons recorded (failed ones included)

    def to_json(self) -> dict[str, Any]:
        return {"results": [result_dict(r) for r in self.results],
                "matrix": [{"model": c.model, "opponent": c.opponent, "winRate": c.win_rate,
                            "comparisons": c.comparisons} for c in self.matrix],
                "comparisons": self.comparisons}

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Results:
        return Results(
            [ModelResult(r["model"], r["score"], r["errors"], r["costUsd"], r["latencyMsP50"], r["comparisons"],
                         r["scored"]) for r in raw["results"]],
            [MatrixCell(c["model"], c["opponent"], c["winRate"], c["comparisons"]) for c in raw["matrix"]],
            int(raw["comparisons"]))


def result_dict(r: ModelResult) -> dict[str, Any]:
    """One model's result as `eval.completed` carries it (the API's camelCase names)."""
    return {"model": r.model, "score": r.score, "errors": r.errors, "costUsd": r.cost_usd,
            "latencyMsP50": r.latency_ms_p50, "comparisons": r.comparisons, "scored": r.scored}


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def compute(kind: EvalType, models: Sequence[str], outputs: Iterable[OutputFact],
            judgements: Iterable[JudgementFact], dataset_failed: Iterable[str] = ()) -> Results:
    """The standings of every model in `models` order. `dataset_failed` are the rows without a
    dataset output (the `dataset` model's failed outputs)."""
    failed: dict[str, set[str]] = defaultdict(set)
    latencies: dict[str, list[float]] = defaultdict(list)
    cost: dict[str, float] = defaultdict(float)
    for o in outputs:
        cost[o.model] += o.cost_usd
        if not o.ok:
            failed[o.model].add(o.row_id)
        elif o.latency_ms is not None:
            latencies[o.model].append(o.latency_ms)
    failed[DATASET_MODEL].update(dataset_failed)
    error_rows: dict[str, set[str]] = {m: set(failed[m]) for m in models}
    shares: dict[str, list[float]] = defaultdict(list)
    against: dict[tuple[str, str], list[float]] = defaultdict(list)
    recorded = 0
    for j in judgements:
        recorded += 1
        if kind == "head_to_head":
            a, b = j.model, j.opponent or ""
            if j.score is None:
                a_failed, b_failed = j.row_id in failed[a], j.row_id in failed[b]
                for side, side_failed in ((a, a_failed), (b, b_failed)):
                    if side in error_rows and (side_failed or not (a_failed or b_failed)):
                        error_rows[side].add(j.row_id)
                continue
            shares[a].append(j.score)
            shares[b].append(1.0 - j.score)
            against[(a, b)].append(j.score)
            against[(b, a)].append(1.0 - j.score)
        elif j.score is None:
            if j.model in error_rows:
                error_rows[j.model].add(j.row_id)
        else:
            shares[j.model].append(j.score)
    results = [ModelResult(
        model=m, score=_mean(shares[m]), errors=len(error_rows[m]), cost_usd=round(cost[m], 10),
        latency_ms_p50=statistics.median(latencies[m]) if latencies[m] else None,
        comparisons=len(shares[m]) if kind == "head_to_head" else 0, scored=len(shares[m])) for m in models]
    matrix: list[MatrixCell] = []
    if kind == "head_to_head":
        matrix = [MatrixCell(x, y, _mean(against[(x, y)]), len(against[(x, y)]))
                  for x in models for y in models if x != y]
    return Results(results, matrix, recorded if kind == "head_to_head" else 0)


def units_per_row(kind: EvalType, models: Sequence[str]) -> int:
    """Units of work one row takes: each generated output, then each comparison or judgement."""
    generated = sum(1 for m in models if m != DATASET_MODEL)
    judged = len(pairs(models)) if kind == "head_to_head" else len(models)
    return generated + judged
