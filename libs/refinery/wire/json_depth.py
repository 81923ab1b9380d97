"""How deeply parsed JSON nests, checked without recursion.

orjson parses 1024 levels but writes at most 254, so whatever must be written again (a logged call,
an entry inside its event) is checked against a limit first, by the one walk here.
"""

from __future__ import annotations

from typing import Any

_CONTAINERS = frozenset((dict, list))  # what orjson.loads makes of objects and arrays, exactly


def nests_deeper_than(value: Any, limit: int, raw: bytes | None = None) -> bool:
    """Whether `value`, as orjson parsed it, holds objects or arrays more than `limit` levels deep.

    `raw`, the bytes it was parsed from, settles almost every value at C speed: each level opens
    with a `{` or `[`, so bytes with no more of those than `limit` cannot be deeper (brackets
    inside strings only make the count larger, never wrong). Otherwise the walk goes one level
    at a time, never recursing, and stops at the first level that is empty (fine) or past
    `limit` (too deep). It visits containers, not text.
    """
    if raw is not None and (len(raw) <= 2 * limit or raw.count(b"{") + raw.count(b"[") <= limit):
        return False
    level = [value] if type(value) in _CONTAINERS else []
    for _ in range(limit):
        if not level:
            return False
        level = [child for node in level for child in (node.values() if type(node) is dict else node)
                 if type(child) in _CONTAINERS]
    return bool(level)
