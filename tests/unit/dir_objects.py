"""A directory standing in for an object-store bucket in unit tests (the calls the trainer and
inference make: get_bytes, put_bytes, put_dir, get_dir), with keys that can be made to fail."""

from __future__ import annotations

import shutil
from pathlib import Path

from refinery.stores.objectstore import ObjectNotFound


class DirObjects:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.failing: dict[str, BaseException] = {}  # key -> what reading it raises
        self.reads: list[str] = []

    def _read(self, key: str) -> Path:
        self.reads.append(key)
        if key in self.failing:
            raise self.failing[key]
        path = self.root / key
        if not path.exists():
            raise ObjectNotFound(key)
        return path

    def put_bytes(self, key: str, data: bytes) -> None:
        (self.root / key).parent.mkdir(parents=True, exist_ok=True)
        (self.root / key).write_bytes(data)

    def get_bytes(self, key: str) -> bytes:
        return self._read(key).read_bytes()

    def put_dir(self, local: Path, prefix: str) -> str:
        shutil.copytree(local, self.root / prefix, dirs_exist_ok=True)
        return prefix

    def get_dir(self, prefix: str, local: Path) -> Path:
        shutil.copytree(self._read(prefix), local, dirs_exist_ok=True)
        return local
