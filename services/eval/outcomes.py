"""What running one unit of an eval can come to, shared by the runner and the parts that do the work.

A unit either ends in a result that is recorded (`Judged`, or a generated output with its error),
or it does not end: `Unreachable` says a service the unit needs did not answer (proxy-router,
criteria-judge), which is nobody's verdict, so nothing is recorded and the runner tries again
later; `EvalCannotRun` says the eval as a whole cannot go on (its criterion was deleted), which
turns it to ERROR.
"""

from __future__ import annotations

from dataclasses import dataclass


class Unreachable(Exception):
    """A service the unit needs did not answer; try again later, record nothing."""


class EvalCannotRun(Exception):
    """The eval as a whole cannot run on (the message says why, and becomes the eval's error)."""


@dataclass(frozen=True)
class Judged:
    """A judgement or grade as recorded: `score` None means it failed, with `error` saying why."""

    score: float | None
    reasoning: str = ""
    error: str | None = None
    winner: str | None = None  # head_to_head: the winning model, None for a tie
    cost_usd: float = 0.0


def failed(error: str) -> Judged:
    return Judged(None, error=error[:2000])
