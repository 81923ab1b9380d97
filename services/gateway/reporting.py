"""/report and /report-anthropic: turning a client's report into a durable log event."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from refinery.events.envelope import now_ms
from refinery.events.request_logs import LogSource, RequestLogRecordedV2, metadata_overrides
from refinery.wire.anthropic import message_to_openai_completion
from refinery.wire.openai_shapes import (
    completion_id_of,
    error_message_of,
    model_of,
    usage_of,
)
from refinery.wire.pricing import cost_usd

TagValue = str | float | int | bool | None


class ReportRequest(BaseModel):
    """Body of POST /report. Payloads are any JSON and are stored verbatim."""

    model_config = ConfigDict(extra="ignore")

    requestedAt: float | None = Field(default=None, description="Unix timestamp in milliseconds")
    receivedAt: float | None = Field(default=None, description="Unix timestamp in milliseconds")
    reqPayload: Any = Field(default=None, description="The request as sent to the model")
    respPayload: Any = Field(default=None, description="The response, or the error body")
    statusCode: int | None = Field(default=None, ge=100, le=599, description="HTTP status of the response")
    errorMessage: str | None = None
    tags: dict[str, TagValue] | None = Field(default=None, description="DEPRECATED: use reqPayload.metadata")


class ReportAnthropicRequest(ReportRequest):
    metadata: dict[str, TagValue] | None = None


class ReportResponse(BaseModel):
    status: str = "ok"


def build_log(body: ReportRequest, source: LogSource) -> RequestLogRecordedV2:
    req = body.reqPayload
    resp = body.respPayload
    extra_meta = body.metadata if isinstance(body, ReportAnthropicRequest) else None
    error = body.errorMessage
    if error is None and body.statusCode is not None and body.statusCode >= 400:
        error = error_message_of(resp)
    resp_openai = message_to_openai_completion(resp) if source == "report-anthropic" else resp
    usage = usage_of(resp)
    return RequestLogRecordedV2(
        source=source,
        received_at=now_ms(),
        requested_at=body.requestedAt,
        completed_at=body.receivedAt,
        provider="anthropic" if source == "report-anthropic" else "openai",
        model=model_of(req),
        status_code=body.statusCode,
        error_message=error,
        req_payload=req,
        resp_payload=resp,
        resp_openai=resp_openai if source == "report-anthropic" else None,
        # The request's own metadata stays inside req_payload: only what the tags change travels beside it.
        metadata_overrides=metadata_overrides(body.tags, extra_meta),
        usage=usage,
        cost_usd=cost_usd(model_of(req), usage),
        completion_id=completion_id_of(resp),
    )
