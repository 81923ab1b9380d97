"""Admin routes for dead letters: list them with their reasons, and replay one (as it was, or fixed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, Field

from gateway.auth import admin_only
from gateway.dead_letters import DeadLetterBook, Replayer, ReplayRefused, fixed_value
from gateway.errors import ApiError

router = APIRouter(prefix="/admin/v1/dead-letters", dependencies=[Depends(admin_only)], tags=["admin"])


class ReplayBody(BaseModel):
    value: Any = Field(default=None, description="The corrected record, as JSON (replaces the one set aside)")
    valueBase64: str | None = Field(default=None, description="The corrected record as raw bytes, base64")


def _book(request: Request) -> DeadLetterBook:
    book = request.app.state.deps.dead_letters
    if book is None:
        raise ApiError(503, "UNAVAILABLE", "dead letters are not available on this gateway")
    return book


@router.get("", summary="List dead letters: records the platform set aside, each with its reason")
async def list_dead_letters(
    request: Request,
    topic: str | None = Query(default=None, max_length=200),
    service: str | None = Query(default=None, max_length=100),
    projectId: str | None = Query(default=None, max_length=200),
    replayed: bool | None = Query(default=None, description="Only letters replayed (true) or not yet (false)"),
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
) -> dict[str, Any]:
    letters = _book(request).find(topic=topic, service=service, project_id=projectId, replayed=replayed)
    return {"data": [letter.to_api() for letter in letters[offset:offset + limit]], "total": len(letters)}


@router.get("/{letter_id}", summary="One dead letter, with the record and its replays")
async def get_dead_letter(letter_id: str, request: Request) -> dict[str, Any]:
    letter = _book(request).letters.get(letter_id)
    if letter is None:
        raise ApiError(404, "NOT_FOUND", f"dead letter {letter_id} not found")
    return letter.to_api()


@router.post("/{letter_id}/replay", summary="Put a dead letter's record (or a fixed one) back on its topic")
async def replay_dead_letter(letter_id: str, request: Request,
                             body: ReplayBody | None = Body(default=None)) -> dict[str, Any]:
    letter = _book(request).letters.get(letter_id)
    if letter is None:
        raise ApiError(404, "NOT_FOUND", f"dead letter {letter_id} not found")
    replayer: Replayer = request.app.state.deps.replayer
    try:
        value = fixed_value(body.model_dump(exclude_unset=True) if body is not None else None)
        position = await replayer.replay(letter, value)
    except ReplayRefused as exc:
        code = {409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE"}.get(exc.status, "BAD_REQUEST")
        raise ApiError(exc.status, code, str(exc)) from exc
    return {"id": letter_id, "topic": letter.recorded.topic, "fixed": value is not None,
            "partition": position.partition if position else None,
            "offset": position.offset - 1 if position else None, "spooled": position is None}
