"""What a criterion is allowed to be: its name, its templated variables, its prompt, and how callers
name one of its versions (`name`, `name@vN`, `name@N`).

Pure checks with no I/O, shared by the servicer (which refuses bad requests with INVALID_ARGUMENT) and
the store. Messages name the field, and the two NOT_FOUND messages are the exact words the OpenPipe SDK
shows its users.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# `/criteria/judge` is a route of its own, so no criterion may be called `judge`.
RESERVED_NAMES = frozenset({"judge"})
VARIABLES: tuple[str, ...] = ("messages", "tools", "tool_choice", "output")
MAX_PROMPT_CHARS = 20_000
MAX_MODEL_CHARS = 300
MAX_ALIGNMENT_ROWS = 10_000  # rows one criterion's alignment set may hold: every version judges every row
_VERSION = re.compile(r"^v?([1-9][0-9]{0,8})$")


class Invalid(ValueError):
    """The request is not a valid criterion (the message names the field)."""


class NotFound(KeyError):
    """No such criterion, version or alignment row (the message is what the caller sees)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class Conflict(ValueError):
    """The name is taken by a live criterion of the project."""


def criterion_not_found(name: str) -> NotFound:
    return NotFound(f"Criterion {name} not found")


def version_not_found(version_text: str, name: str) -> NotFound:
    return NotFound(f"Criterion version {version_text} not found for criterion {name}")


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise Invalid("name must be 1-64 characters of a-z, 0-9 and '-', starting with a letter or digit")
    if name in RESERVED_NAMES:
        raise Invalid(f"name {name!r} is reserved")
    return name


def check_variables(variables: Sequence[str]) -> list[str]:
    """The variables in their canonical order, each once; `output` is required."""
    unknown = [v for v in variables if v not in VARIABLES]
    if unknown:
        raise Invalid(f"templatedVariables: unknown variable {unknown[0]!r} (allowed: {', '.join(VARIABLES)})")
    if "output" not in variables:
        raise Invalid("templatedVariables must include 'output'")
    return [v for v in VARIABLES if v in variables]


def check_prompt(prompt: str) -> str:
    if not prompt.strip():
        raise Invalid("prompt is required for an LLM-judged criterion")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise Invalid(f"prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are allowed")
    return prompt


def check_judge_model(model: str) -> str:
    model = model.strip()
    if not model:
        raise Invalid("judgeModel must not be empty")
    if len(model) > MAX_MODEL_CHARS:
        raise Invalid(f"judgeModel is longer than {MAX_MODEL_CHARS} characters")
    return model


@dataclass(frozen=True)
class Ref:
    """A caller's name for a criterion version: `version` None means the latest; `version_text` is what
    was written after `@` (echoed in the NOT_FOUND message), `version` None with a text means it names
    no version that can exist."""

    name: str
    version: int | None
    version_text: str | None

    @property
    def pinned(self) -> bool:
        return self.version_text is not None


def parse_ref(ref: str) -> Ref:
    """`name`, `name@vN` or `name@N`. Anything after `@` that is not a version number is kept as text,
    so the caller is told that version does not exist rather than that the request is malformed."""
    ref = ref.strip()
    if not ref:
        raise Invalid("criterion_id is required")
    name, at, rest = ref.partition("@")
    if not at:
        return Ref(name, None, None)
    m = _VERSION.match(rest)
    return Ref(name, int(m.group(1)) if m else None, rest)
