"""The response cache port: Redis in production and tests, an embedded SQLite file otherwise.

Values are opaque bytes with a time to live. Both backends pass one contract suite.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from abc import ABC, abstractmethod
from pathlib import Path


class ResponseCache(ABC):
    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl_s: int) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...


class RedisCache(ResponseCache):
    def __init__(self, url: str, prefix: str = "refinery:cache:") -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(url)
        self._prefix = prefix

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(self._prefix + key)
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        await self._redis.set(self._prefix + key, value, ex=ttl_s)

    async def close(self) -> None:
        await self._redis.aclose()


class EmbeddedCache(ResponseCache):
    """A SQLite table in the service's data dir; expired rows are ignored and swept on write."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value BLOB, expires REAL)")
        self._writes = 0

    def _get(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value, expires FROM cache WHERE key = ?", (key,)).fetchone()
        if row is None or row[1] < time.time():
            return None
        return bytes(row[0])

    def _set(self, key: str, value: bytes, ttl_s: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO cache VALUES (?, ?, ?)", (key, value, time.time() + ttl_s))
        self._writes += 1
        if self._writes % 1000 == 0:
            self._db.execute("DELETE FROM cache WHERE expires < ?", (time.time(),))

    async def get(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self._get, key)

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        await asyncio.to_thread(self._set, key, value, ttl_s)

    async def close(self) -> None:
        self._db.close()
