"""Which criterion version a caller means: `name` (the latest), `name@vN` / `name@N`, or, where no
criterion has that name, a DEPLOYED reward model's slug (the docs let op-criteria and the judge API
name reward models directly; one is judged as a reward-model criterion at version 1)."""

from __future__ import annotations

import asyncio

from refinery.events.criteria import CriterionVersionSpec

from criteria_judge.definitions import criterion_not_found, parse_ref, version_not_found
from criteria_judge.judging import RewardModels, Target
from criteria_judge.store import CriteriaStore


class Resolver:
    def __init__(self, store: CriteriaStore, reward_models: RewardModels) -> None:
        self._store = store
        self._reward_models = reward_models

    async def target(self, project_id: str, text: str) -> Target:
        """The version `text` names; NotFound with the SDK's message when there is none, JudgeError
        (unreachable) when only model-registry could tell and it does not answer."""
        ref = parse_ref(text)
        view = await asyncio.to_thread(self._store.find, project_id, ref.name)
        if view is None:
            if not ref.pinned and await self._reward_models.deployed(project_id, ref.name) is not None:
                return Target(project_id, ref.name, CriterionVersionSpec(version=1, reward_model=ref.name))
            raise criterion_not_found(ref.name)
        if not ref.pinned:
            return Target(project_id, view.name, view.latest.spec)
        found = view.version(ref.version) if ref.version is not None else None
        if found is None:
            raise version_not_found(ref.version_text or "", view.name)
        return Target(project_id, view.name, found.spec)
