"""Recording a report: its `request_log.recorded` event, published durably, and the acknowledged
position kept so the project's next read sees it. The one copy, used by the hot path and by the
FastAPI routes `/report` and `/report-anthropic`."""

from __future__ import annotations

from typing import Any

import orjson
from refinery.bus.producer import EventTooLarge, NotKept
from refinery.events.request_logs import LogSource, request_log_recorded

from gateway.errors import ApiError
from gateway.reporting import ReportRequest, build_log

MAX_JSON_DEPTH = 254  # orjson's limit when writing the event


def report_event(project_id: str, body: ReportRequest, source: LogSource) -> bytes:
    """The event's bytes; a 400 naming the payloads when orjson cannot write them."""
    try:
        return request_log_recorded(project_id, build_log(body, source)).to_bytes()
    except orjson.JSONEncodeError as exc:
        raise ApiError(400, "BAD_REQUEST", "Input validation failed", [
            f"reqPayload/respPayload cannot be stored: {exc} (at most {MAX_JSON_DEPTH} levels of nesting "
            "and integers within 64 bits)"]) from exc


async def publish(deps: Any, project_id: str, event: bytes) -> None:
    """Durable on the bus (or in the spool) before it returns; reads of the project then wait for it.
    A 413 naming the limit when the bus could never take the event: refused before anything is kept.
    A 507 (full disk) or 503 when neither the bus nor the spool could keep it: nothing is acknowledged
    that is not durable, and the client may send it again."""
    try:
        pos = await deps.producer.publish(project_id.encode(), event)
    except EventTooLarge as exc:
        raise ApiError(413, "PAYLOAD_TOO_LARGE", f"The report is too large to log: {exc}", [
            f"reqPayload/respPayload: at most {exc.limit} bytes once logged (the log event was {exc.size})"]) from exc
    except NotKept as exc:
        raise not_kept(exc) from exc
    deps.reads.acknowledged(project_id, pos)


def not_kept(exc: NotKept) -> ApiError:
    """The answer to a write that could not be made durable: 507 for a full disk, else 503."""
    if exc.no_space:
        return ApiError(507, "INSUFFICIENT_STORAGE", f"Not logged, try again later: {exc}")
    return ApiError(503, "UNAVAILABLE", f"Not logged, try again later: {exc}")
