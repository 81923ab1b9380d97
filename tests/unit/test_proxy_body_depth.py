"""The nesting check on a chat body: the same verdict as orjson's writer, without serialising."""

from __future__ import annotations

import json

import orjson
import pytest
from proxy_router.chat_request import MAX_LOGGED_DEPTH
from refinery.wire.json_depth import nests_deeper_than


def _writable(value) -> bool:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


def _arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("depth", [1, 2, 253, 254, 255, 256, 1000])
@pytest.mark.parametrize("shape", [_arrays, _objects])
def test_agrees_with_what_orjson_can_write(shape, depth):
    raw = shape(depth)
    value = orjson.loads(raw)
    assert nests_deeper_than(value, MAX_LOGGED_DEPTH, raw) is not _writable(value)
    assert nests_deeper_than(value, MAX_LOGGED_DEPTH) is not _writable(value)  # the walk alone


def test_a_long_wide_body_is_walked_not_refused():
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "[{" * 300}]}] * 500}
    raw = orjson.dumps(body)
    assert len(raw) > 2 * MAX_LOGGED_DEPTH  # the byte bound does not settle it
    assert not nests_deeper_than(body, MAX_LOGGED_DEPTH, raw)


def test_one_deep_branch_among_shallow_ones_is_found():
    deep = orjson.loads(_arrays(300))
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}] * 50, "tools": [{"a": {}}, deep]}
    raw = json.dumps(body).encode()  # orjson could not write it: that is the point
    assert nests_deeper_than(body, MAX_LOGGED_DEPTH, raw)
    assert not nests_deeper_than(body, 400)


def test_scalars_and_empty_containers():
    assert not nests_deeper_than("text", 0)
    assert not nests_deeper_than({}, 1) and nests_deeper_than({}, 0)
    assert nests_deeper_than([[]], 1) and not nests_deeper_than([[]], 2)
