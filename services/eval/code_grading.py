"""Code evals: the eval's TypeScript `grader(args)` run on each output in the sandbox (`eval.grading`).

The grader gets the documented arguments (`messages`, `tools`, `toolChoice`, `generatedOutput`,
`datasetOutput`) and returns a number in [0, 1], the row's grade. Rows of one eval are graded in
batches (one sandbox run for many rows); a row whose grader throws, runs too long or returns
something else than such a number is that row's failed grade, never the eval's. A sandbox that
cannot start at all grades nothing: the rows are tried again later (`Unreachable`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from eval.grading import SandboxUnavailable
from eval.outcomes import Judged, Unreachable, failed


class GradeLike(Protocol):
    @property
    def score(self) -> float | None: ...

    @property
    def error(self) -> str | None: ...

    @property
    def reasoning(self) -> str: ...


class Sandbox(Protocol):
    """What eval needs of `eval.grading.GraderSandbox`."""

    async def check(self, source: str) -> str | None: ...

    async def grade_many(self, source: str, rows: list[dict[str, Any]]) -> Sequence[GradeLike]: ...


def grader_args(row_input: dict[str, Any], generated: dict[str, Any], dataset_output: dict[str, Any]
                ) -> dict[str, Any]:
    return {"messages": list(row_input.get("messages") or []), "tools": row_input.get("tools"),
            "toolChoice": row_input.get("tool_choice"), "generatedOutput": generated,
            "datasetOutput": dataset_output or None}


def judged_of(grade: GradeLike) -> Judged:
    if grade.error is not None:
        return failed(f"grader: {grade.error}")
    score = grade.score
    if score is None or not isinstance(score, (int, float)) or isinstance(score, bool) or math.isnan(score) \
            or not 0.0 <= score <= 1.0:
        return failed(f"grader: returned {score!r}, not a number between 0 and 1")
    return Judged(float(score), grade.reasoning or "")


class CodeGrader:
    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    async def check(self, source: str) -> str | None:
        """Why the grader does not compile, or None; Unreachable when the sandbox cannot start."""
        try:
            return await self._sandbox.check(source)
        except SandboxUnavailable as exc:
            raise Unreachable(f"the grader sandbox: {exc}") from None

    async def grade_many(self, source: str, rows: list[dict[str, Any]]) -> list[Judged]:
        """One grade per row of grader args, in order; Unreachable when the sandbox cannot start."""
        try:
            grades = list(await self._sandbox.grade_many(source, rows))
        except SandboxUnavailable as exc:
            raise Unreachable(f"the grader sandbox: {exc}") from None
        if len(grades) != len(rows):
            raise RuntimeError(f"the sandbox graded {len(grades)} of {len(rows)} rows")
        return [judged_of(g) for g in grades]
