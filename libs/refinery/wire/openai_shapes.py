"""Reading the facts a log needs out of OpenAI-shaped payloads, tolerantly.

Payloads arrive as the client sent them: explicit nulls, unknown keys and even invalid
requests are normal (the SDK reports whatever its caller passed), so nothing here raises.
"""

from __future__ import annotations

from typing import Any

from refinery.events.request_logs import Usage, clamp_tokens
from refinery.events.request_logs import merge_metadata as _merge_metadata
from refinery.events.request_logs import metadata_text as _metadata_text


def model_of(req: Any) -> str | None:
    if isinstance(req, dict):
        model = req.get("model")
        if isinstance(model, str):
            return model
    return None


def _int(value: Any) -> int:
    """A token count from a client's or upstream's usage: anything but an int is 0, and it is clamped
    to what the log store holds."""
    return clamp_tokens(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_of(resp: Any) -> Usage | None:
    if not isinstance(resp, dict):
        return None
    usage = resp.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt = _int(usage.get("prompt_tokens")) or _int(usage.get("input_tokens"))
    completion = _int(usage.get("completion_tokens")) or _int(usage.get("output_tokens"))
    total = _int(usage.get("total_tokens")) or prompt + completion
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def completion_id_of(resp: Any) -> str | None:
    if isinstance(resp, dict) and isinstance(resp.get("id"), str):
        return resp["id"]
    return None


def error_message_of(resp: Any) -> str | None:
    """OpenAI and Anthropic error bodies both carry error.message."""
    if isinstance(resp, dict):
        err = resp.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(resp.get("message"), str) and "choices" not in resp:
            return resp["message"]
    return None


# Metadata's meaning belongs to the request-log events (consumers merge it the same way); re-exported here.
metadata_text = _metadata_text
merge_metadata = _merge_metadata
