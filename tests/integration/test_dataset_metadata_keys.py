"""Listing entries by metadata matches any string key exactly, on each SQL backend: quotes,
backslashes, dots, JSON-path syntax, unicode and very long keys are keys like any other."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dataset.store import DatasetStore, NewEntry
from refinery.wire.entries import parse_entry

from tests.integration.conftest import postgres_database

KEYS = [
    'a"b', '"', '\\', 'a\\b', '\\"', "x.y", "$.x", "a[0]", "a'b", "ü", "日本語", "emoji 🎉", "tab\tkey",
    "new\nline", "k" * 5000, " spaced ", "plain",
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request, tmp_path_factory) -> Iterator[DatasetStore]:
    if request.param == "sqlite":
        s = DatasetStore(f"sqlite:///{tmp_path_factory.mktemp('meta') / 'dataset.db'}")
        yield s
        s.engine.dispose()
        return
    with postgres_database("refinery_meta") as url:
        s = DatasetStore(url)
        yield s
        s.engine.dispose()


def _entry(i: int, metadata: dict[str, str]) -> NewEntry:
    return NewEntry(parse_entry({"messages": [
        {"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}], "metadata": metadata}))


@pytest.fixture(scope="module")
def dataset_id(store: DatasetStore) -> str:
    d = store.datasets.create("p1", "keys")
    # Entry i holds KEYS[i] with value "v"; a last entry holds every key with another value, and
    # near misses ("a" for 'a"b', "x" for "x.y") that a path-built lookup could confuse.
    entries = [_entry(i, {key: "v"}) for i, key in enumerate(KEYS)]
    entries.append(_entry(len(KEYS), {**{key: "other" for key in KEYS}, "a": "v", "x": "v", "b": "v", "y": "v"}))
    store.entries.add("p1", d.id, entries, "api")
    return d.id


@pytest.mark.parametrize("key", KEYS, ids=lambda k: repr(k[:12]))
def test_each_key_finds_exactly_its_entry(store: DatasetStore, dataset_id: str, key: str) -> None:
    rows, total = store.entries.page("p1", dataset_id, metadata={key: "v"})
    assert total == 1
    assert rows[0]["metadata"] == {key: "v"}
    assert rows[0]["messages"][0]["content"] == f"q{KEYS.index(key)}"


def test_a_key_no_entry_holds_matches_nothing(store: DatasetStore, dataset_id: str) -> None:
    assert store.entries.page("p1", dataset_id, metadata={'no"such\\key': "v"}) == ([], 0)


def test_keys_combine_and_values_must_match(store: DatasetStore, dataset_id: str) -> None:
    rows, total = store.entries.page("p1", dataset_id, metadata={'a"b': "other", "a": "v"})
    assert total == 1 and rows[0]["messages"][0]["content"] == f"q{len(KEYS)}"
    assert store.entries.page("p1", dataset_id, metadata={'a"b': "v", "a": "v"}) == ([], 0)
    assert store.entries.page("p1", dataset_id, metadata={'a"b': "V"}) == ([], 0)
