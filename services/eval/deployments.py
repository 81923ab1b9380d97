"""`autoAddModels`: a model that reaches DEPLOYED is added to the evals of the dataset it was trained on.

`model.deployed` is keyed by the model id on `refinery.models`; the registry tells its slug, its
dataset and whether it is still deployed (it may have been deleted since). Each eval of that project
and dataset with `autoAddModels`, created before the deployment, gets `openpipe:<slug>` (reason
`auto`), and the runner then generates only the new outputs and comparisons. Redelivery is
harmless: a model already in an eval is not added again. A registry that does not answer makes the
handler raise, and the follower retries.
"""

from __future__ import annotations

import asyncio
import logging

from refinery.events import models as md
from refinery.runtime.subscriptions import Event, Subscriptions

from eval.definitions import OPENPIPE_PREFIX, Invalid, NotFound, Unavailable
from eval.registry import Registry, is_reward_model
from eval.runner import EvalRunner
from eval.store import EvalStore

log = logging.getLogger("refinery.eval")


class DeployedModels:
    def __init__(self, store: EvalStore, registry: Registry, runner: EvalRunner) -> None:
        self._store = store
        self._registry = registry
        self._runner = runner

    async def deployed(self, project_id: str, model_id: str, deployed_at: float) -> list[str]:
        """Add the model to its dataset's auto-adding evals that existed when it was deployed (ms since
        the epoch); the ids of the evals it was added to."""
        model = await self._registry.by_id(project_id, model_id)
        if model is None or model.status != "DEPLOYED" or is_reward_model(model):
            return []
        name = f"{OPENPIPE_PREFIX}{model.slug}"
        added: list[str] = []
        targets = await asyncio.to_thread(self._store.auto_add_targets, project_id, model.dataset_id, deployed_at)
        for eval_id in targets:
            try:
                view = await asyncio.to_thread(self._store.add_models, project_id, eval_id, [name], reason="auto")
            except (NotFound, Invalid) as exc:  # deleted or failed meanwhile: nothing to add it to
                log.info("not adding %s to eval %s: %s", name, eval_id, exc)
                continue
            if view is not None:
                added.append(eval_id)
        if added:
            log.info("added %s to evals %s", name, ", ".join(added))
            self._runner.wake()
        return added


def deployment_subscriptions(deployments: DeployedModels) -> Subscriptions:
    subs = Subscriptions("eval")

    @subs.on(md.MODEL_DEPLOYED)
    async def deployed(event: Event[md.ModelDeployed]) -> None:
        try:
            await deployments.deployed(event.project_id, event.aggregate_id, event.occurred_at)
        except Unavailable as exc:
            raise RuntimeError(f"model.deployed {event.aggregate_id}: {exc}") from exc

    return subs
