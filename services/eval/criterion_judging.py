"""Criterion evals: each output judged by criteria-judge's `Judge` (PASS → 1, FAIL → 0).

The criterion is named as the eval has it (`name` is its latest version when judged, `name@vN` a
fixed one), and criteria-judge calls the judge model through proxy-router, so these calls are
logged and costed in the project too. What its refusals mean here:
- NOT_FOUND: the criterion (or that version) is gone: the eval as a whole cannot run on;
- UNAVAILABLE with the judge's own words ("judge model ... answered ...", "the judge ..."): the judge
  model failed this output: a failed judgement; any other UNAVAILABLE (criteria-judge, proxy-router
  or model-registry down) and CANCELLED: nobody's verdict, tried again later;
- anything else (INVALID_ARGUMENT, DEADLINE_EXCEEDED, ...): a failed judgement with the details.
"""

from __future__ import annotations

from typing import Any

import grpc
import orjson
from refinery.rpc import criteria_pb2

from eval.outcomes import EvalCannotRun, Judged, Unreachable, failed

_JUDGES_OWN_WORDS = ("judge model ", "the judge")


class CriterionJudge:
    def __init__(self, criteria: Any, timeout_s: float) -> None:
        self._criteria = criteria  # a criteria_pb2_grpc.CriteriaStub
        self._timeout_s = timeout_s

    async def judge(self, project_id: str, criterion: str, row_input: dict[str, Any], output: dict[str, Any]
                    ) -> Judged:
        request = criteria_pb2.JudgeRequest(project_id=project_id, criterion_id=criterion,
                                            input_json=orjson.dumps(row_input), output_json=orjson.dumps(output))
        try:
            resp = await self._criteria.Judge(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code == grpc.StatusCode.NOT_FOUND:
                raise EvalCannotRun(details or f"Criterion {criterion} not found") from None
            if code == grpc.StatusCode.CANCELLED or (
                    code == grpc.StatusCode.UNAVAILABLE and not details.startswith(_JUDGES_OWN_WORDS)):
                raise Unreachable(f"criteria-judge: {code.name}: {details}") from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return failed(f"criterion {criterion}: the judge did not answer within {self._timeout_s:g} s")
            return failed(f"criterion {criterion}: {details or code.name}")
        passed = resp.judgement == "PASS"
        return Judged(1.0 if passed else 0.0, resp.explanation, cost_usd=resp.usage.cost_usd)
