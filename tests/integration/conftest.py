"""Real servers for integration tests: SeaweedFS and Tansu on free ports, one each per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from refinery.stack.infra import SeaweedFS, Tansu


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    root = tmp_path_factory.mktemp("seaweed")
    s = SeaweedFS(root / "data", root / "logs")
    s.start()
    s.ensure_bucket("tansu")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def tansu(seaweed: SeaweedFS, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tansu]:
    t = Tansu(tmp_path_factory.mktemp("tansu-logs"), seaweed.credentials)
    t.start()
    yield t
    t.stop()
