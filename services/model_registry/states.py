"""The model lifecycle: which states a model can be in, which moves between them are legal, and
the status the API shows for each.

The registry keeps more states than the API shows, because the API's `ERROR` covers three ends
that must not be confused when the trainer's events arrive late or twice: a model whose training
FAILED, one the user CANCELLED and one the watchdog TIMED_OUT. None of them may ever become
DEPLOYED, and a DELETED model never moves again. Every change of state goes through `check`, so
a late `training.completed` for a cancelled model is refused rather than deploying it.

The moves (the table `TRANSITIONS` is the authority):
- forward: QUEUED → PROVISIONING → TRAINING → DEPLOYING → DEPLOYED (a short job may skip ahead);
- back: PROVISIONING/TRAINING → QUEUED when an attempt ends without an outcome and the job is
  requeued, TRAINING → PROVISIONING when the next phase or attempt starts;
- ends: FAILED from anything before DEPLOYED, CANCELLED from QUEUED/PROVISIONING/TRAINING,
  TIMED_OUT from PROVISIONING/TRAINING, DELETED from everything but DELETED.
"""

from __future__ import annotations

from enum import StrEnum


class ModelState(StrEnum):
    QUEUED = "QUEUED"
    PROVISIONING = "PROVISIONING"
    TRAINING = "TRAINING"
    DEPLOYING = "DEPLOYING"  # trained; inference is loading the adapter
    DEPLOYED = "DEPLOYED"
    FAILED = "FAILED"  # training or deployment failed
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"  # the trainer stopped reporting on running work
    DELETED = "DELETED"


S = ModelState

TRANSITIONS: dict[ModelState, frozenset[ModelState]] = {
    S.QUEUED: frozenset({S.PROVISIONING, S.DEPLOYING, S.FAILED, S.CANCELLED, S.DELETED}),
    S.PROVISIONING: frozenset({S.QUEUED, S.TRAINING, S.DEPLOYING, S.FAILED, S.CANCELLED, S.TIMED_OUT, S.DELETED}),
    S.TRAINING: frozenset({S.QUEUED, S.PROVISIONING, S.DEPLOYING, S.FAILED, S.CANCELLED, S.TIMED_OUT, S.DELETED}),
    S.DEPLOYING: frozenset({S.DEPLOYED, S.FAILED, S.DELETED}),
    S.DEPLOYED: frozenset({S.DELETED}),
    S.FAILED: frozenset({S.DELETED}),
    S.CANCELLED: frozenset({S.DELETED}),
    S.TIMED_OUT: frozenset({S.DELETED}),
    S.DELETED: frozenset(),
}

# Training is under way (the trainer owns the job): a cancel request reaches it.
TRAINING_STATES = frozenset({S.QUEUED, S.PROVISIONING, S.TRAINING})
# Work the trainer is running: only these can time out (a queued job waits its turn).
RUNNING_STATES = frozenset({S.PROVISIONING, S.TRAINING})

# What the API shows (the statuses of the OpenPipe API, unchanged): the three failed ends are
# all ERROR, and a model being deployed is still TRAINING until inference answers with it.
_WIRE: dict[ModelState, str] = {
    S.QUEUED: "QUEUED", S.PROVISIONING: "PROVISIONING", S.TRAINING: "TRAINING", S.DEPLOYING: "TRAINING",
    S.DEPLOYED: "DEPLOYED", S.FAILED: "ERROR", S.CANCELLED: "ERROR", S.TIMED_OUT: "ERROR", S.DELETED: "DELETED",
}


class IllegalTransition(ValueError):
    """A move the lifecycle does not allow (for example a cancelled model becoming DEPLOYED)."""

    def __init__(self, current: ModelState, target: ModelState) -> None:
        super().__init__(f"a {current.value} model cannot become {target.value}")
        self.current = current
        self.target = target


def check(current: ModelState, target: ModelState) -> bool:
    """True when `current → target` is a legal change, False when the model is already there
    (a redelivered event changes nothing); raises IllegalTransition otherwise."""
    if current == target and current != S.DELETED:
        return False
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)
    return True


def state_of(status: str, deleted: bool = False) -> ModelState:
    """The state of a stored model. Rows written before the lifecycle had its own states hold
    the API's `ERROR`, which is read as FAILED (an end, like every failed state)."""
    if deleted:
        return S.DELETED
    if status == "ERROR":
        return S.FAILED
    return ModelState(status)


def wire_status(state: ModelState | str) -> str:
    """The status the API shows for a state (stored rows hold the state's name)."""
    return _WIRE[state_of(state) if isinstance(state, str) else state]
