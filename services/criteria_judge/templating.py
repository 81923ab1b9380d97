"""The judge's prompt: fixed instructions plus the criterion's prompt, and the judged call rendered
from the criterion's templated variables only.

Each variable travels in a tag block of its own, the tags on lines of their own around pretty JSON
(`<output>\\n{...}\\n</output>`). JSON writes a newline inside a string as `\\n`, so no judged text can
open or close a block: a line that is exactly `<output>` is always ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

TOOL_NAME = "record_judgement"

INSTRUCTIONS = (
    "You are a judge. You are shown the input an AI model was given and the output it produced, and a "
    "criterion. Decide whether the output passed or failed the criterion: judge only the output, using the "
    "input as context. Record your decision by calling the record_judgement function exactly once, with "
    "`explanation` (a short reason, written first), `passed` (true if the output passed the criterion, "
    "false if it failed) and `score`, from 0 to 1, how fully the output meets the criterion: at least 0.5 "
    "if it passed, below 0.5 if it failed."
)

JUDGEMENT_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Record whether the output passed or failed the criterion, and why.",
        "parameters": {
            "type": "object",
            "properties": {
                "explanation": {"type": "string", "description": "Why the output passed or failed."},
                "passed": {"type": "boolean", "description": "true: the output passed; false: it failed."},
                "score": {"type": "number", "minimum": 0, "maximum": 1, "description": (
                    "How fully the output meets the criterion, 0 to 1: at least 0.5 if it passed, below 0.5 "
                    "if it failed.")},
            },
            "required": ["explanation", "passed"],
            "additionalProperties": False,
        },
    },
}
FORCED_TOOL_CHOICE: dict[str, Any] = {"type": "function", "function": {"name": TOOL_NAME}}


def system_message(prompt: str) -> str:
    return f"{INSTRUCTIONS}\n\nThe criterion:\n{prompt.strip()}"


def _block(tag: str, value: Any) -> str:
    body = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    return f"<{tag}>\n{body}\n</{tag}>"


def user_message(variables: Sequence[str], judged_input: dict[str, Any], output: dict[str, Any]) -> str:
    """The judged call: one block per templated variable, in the order given, and nothing else."""
    values = {
        "messages": judged_input.get("messages") or [],
        "tools": judged_input.get("tools"),
        "tool_choice": judged_input.get("tool_choice"),
        "output": output,
    }
    return "\n\n".join(_block(v, values[v]) for v in variables)


def judge_messages(prompt: str, variables: Sequence[str], judged_input: dict[str, Any], output: dict[str, Any]
                   ) -> list[dict[str, str]]:
    return [{"role": "system", "content": system_message(prompt)},
            {"role": "user", "content": user_message(variables, judged_input, output)}]
