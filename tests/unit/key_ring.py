"""The gateway's key checks without a database, for unit tests of routes and hot paths."""

from __future__ import annotations


class KeyRing:
    """`keys` may write; `read_only` may only read; both belong to `project`."""

    def __init__(self, *keys: str, read_only: tuple[str, ...] = (), project: str = "p1") -> None:
        self._writers = set(keys)
        self._readers = set(read_only)
        self._project = project

    def authenticate(self, token: str) -> str | None:
        return self._project if token in self._writers | self._readers else None

    def writer(self, token: str) -> str | None:
        return self._project if token in self._writers else None

    def can_write(self, token: str) -> bool:
        return token in self._writers
