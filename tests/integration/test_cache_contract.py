"""The response-cache contract, against the machine's Redis and the embedded store."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from refinery.stores.cache import EmbeddedCache, RedisCache, ResponseCache


def _redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=0.5).ping())
    except redis.exceptions.ConnectionError:
        return False


@pytest.fixture(params=["embedded", "redis"])
async def cache(request, tmp_path) -> ResponseCache:
    if request.param == "redis":
        if not _redis_up():
            pytest.skip("no Redis on 127.0.0.1:6379")
        c: ResponseCache = RedisCache("redis://127.0.0.1:6379/0", prefix=f"test:{uuid.uuid4().hex}:")
    else:
        c = EmbeddedCache(tmp_path / "cache.db")
    yield c
    await c.close()


async def test_set_then_get(cache: ResponseCache):
    assert await cache.get("k") is None
    await cache.set("k", b"\x00value", 60)
    assert await cache.get("k") == b"\x00value"
    await cache.set("k", b"new", 60)
    assert await cache.get("k") == b"new"


async def test_entries_expire(cache: ResponseCache):
    await cache.set("short", b"v", 1)
    await asyncio.sleep(1.2)
    assert await cache.get("short") is None
