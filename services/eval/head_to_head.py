"""Head-to-head comparisons: the judge prompt, reading its verdict, and why both orders are asked.

Every pair of outputs for a row is shown to the judge model twice, once as A/B and once as B/A. A
model wins the comparison only when both orders pick it; when they disagree, or either says tie, or
either gives no usable verdict, the comparison is a tie (0.5 each). A judge that prefers whatever
comes first therefore turns every comparison into a tie, never into a win: position bias cannot
decide a result. Two identical outputs are a tie without asking.

The verdict is read only from the arguments of the judge's forced `record_comparison` tool call
(`{explanation: string, winner: "A" | "B" | "tie"}`); free text is never read for a verdict.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from eval.calls import CallFailed, ChatClient, chat_completion, first_message
from eval.outcomes import Judged, Unreachable, failed

TOOL_NAME = "record_comparison"
COMPARISON_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Record which of the two outputs is better, and why.",
        "parameters": {
            "type": "object",
            "properties": {
                "explanation": {"type": "string", "description": "Why one output is better, or why neither is."},
                "winner": {"type": "string", "enum": ["A", "B", "tie"],
                           "description": "A for the first output, B for the second, tie when neither is better."},
            },
            "required": ["explanation", "winner"],
            "additionalProperties": False,
        },
    },
}
FORCED_TOOL_CHOICE: dict[str, Any] = {"type": "function", "function": {"name": TOOL_NAME}}
SYSTEM = (
    "You compare two outputs that two models produced for the same input. Decide which output answers "
    "the input better: the more correct, complete and helpful one, following what the input asks for. "
    "The order in which the outputs are shown says nothing about their quality. Answer by calling "
    f"{TOOL_NAME} with a short explanation and the winner: \"A\" for the first output, \"B\" for the "
    "second, or \"tie\" when neither is better."
)
IDENTICAL = "The two outputs are identical: a tie, without asking the judge."

Pick = Literal["A", "B", "tie"]


class UnusableVerdict(Exception):
    """The judge answered without a `record_comparison` call that names a winner."""


@dataclass(frozen=True)
class Reading:
    """One order's verdict: `pick` None when it was unusable (`text` then says why)."""

    pick: Pick | None
    text: str


def output_text(message: dict[str, Any]) -> str:
    """What the judge sees of an output: its content, then its tool calls as JSON (names and
    arguments only: call ids differ between calls and say nothing about quality)."""
    content = message.get("content")
    if isinstance(content, list):
        text = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    else:
        text = content if isinstance(content, str) else ""
    calls = [c.get("function") for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    if isinstance(message.get("function_call"), dict):
        calls.append(message["function_call"])
    shown = [{"name": c.get("name"), "arguments": c.get("arguments")} for c in calls if isinstance(c, dict)]
    if shown:
        text = f"{text}\n{orjson.dumps(shown).decode()}" if text else orjson.dumps(shown).decode()
    return text


def judge_messages(instructions: str, row_input: dict[str, Any], text_a: str, text_b: str) -> list[dict[str, Any]]:
    system = f"{SYSTEM}\n\n{instructions}" if instructions.strip() else SYSTEM
    shown_input = orjson.dumps(list(row_input.get("messages") or [])).decode()
    user = f"<input>{shown_input}</input>\n<output_a>{text_a}</output_a>\n<output_b>{text_b}</output_b>"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def judge_request(judge_model: str, eval_id: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": judge_model, "messages": messages, "tools": [COMPARISON_TOOL], "tool_choice": FORCED_TOOL_CHOICE,
            "temperature": 0, "metadata": {"eval_id": eval_id, "eval_judge": "head_to_head"}}


def read_comparison(response: dict[str, Any]) -> tuple[Pick, str]:
    """(winner, explanation) from the arguments of the answer's `record_comparison` call."""
    message = first_message(response)
    if message is None:
        raise UnusableVerdict("the judge's answer has no message")
    calls = message.get("tool_calls")
    call = next((c for c in calls or [] if isinstance(c, dict) and isinstance(c.get("function"), dict)
                 and c["function"].get("name") == TOOL_NAME), None)
    if call is None:
        raise UnusableVerdict(f"the judge answered without calling {TOOL_NAME}")
    raw = call["function"].get("arguments")
    try:
        args = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except orjson.JSONDecodeError:
        raise UnusableVerdict(f"the {TOOL_NAME} arguments are not JSON") from None
    if not isinstance(args, dict):
        raise UnusableVerdict(f"the {TOOL_NAME} arguments are not a JSON object")
    winner, explanation = args.get("winner"), args.get("explanation")
    if winner not in ("A", "B", "tie"):
        raise UnusableVerdict(f"the {TOOL_NAME} winner is {winner!r}, not A, B or tie")
    if not isinstance(explanation, str):
        raise UnusableVerdict(f"the {TOOL_NAME} call has no string explanation")
    return winner, explanation


def reading_of(response: dict[str, Any]) -> Reading:
    try:
        pick, explanation = read_comparison(response)
    except UnusableVerdict as exc:
        return Reading(None, f"no usable verdict ({exc})")
    return Reading(pick, f"{pick}. {explanation}")


def combine(first: str, second: str, ab: Reading, ba: Reading) -> Judged:
    """The comparison of `first` and `second` from the A/B order (first shown as A) and the B/A order
    (second shown as A): `first`'s share, the winner, both orders' reasoning."""
    ab_winner = {"A": first, "B": second}.get(ab.pick or "")
    ba_winner = {"A": second, "B": first}.get(ba.pick or "")
    winner = ab_winner if ab_winner is not None and ab_winner == ba_winner else None
    share = 0.5 if winner is None else (1.0 if winner == first else 0.0)
    reasoning = f"A/B order (A = {first}): {ab.text}\nB/A order (A = {second}): {ba.text}"
    return Judged(share, reasoning, winner=winner)


class HeadToHeadJudge:
    """Asks the judge model in both orders through proxy-router."""

    def __init__(self, proxy: ChatClient, timeout_s: float, retry_delay_s: float = 1.0) -> None:
        self._proxy = proxy
        self._timeout_s = timeout_s
        self._retry_delay_s = retry_delay_s

    async def compare(self, project_id: str, eval_id: str, judge_model: str, instructions: str,
                      row_input: dict[str, Any], first: tuple[str, dict[str, Any]], second: tuple[str, dict[str, Any]]
                      ) -> Judged:
        """The comparison of two outputs (model, message); raises Unreachable when proxy-router does
        not answer. A judge call that fails makes the comparison a failed one (not a tie)."""
        (a, out_a), (b, out_b) = first, second
        text_a, text_b = output_text(out_a), output_text(out_b)
        if text_a == text_b:
            return Judged(0.5, IDENTICAL)

        async def ask(shown_a: str, shown_b: str) -> tuple[Reading, float]:
            body = judge_request(judge_model, eval_id, judge_messages(instructions, row_input, shown_a, shown_b))
            answer = await chat_completion(self._proxy, project_id, body, timeout_s=self._timeout_s,
                                           retry_delay_s=self._retry_delay_s)
            return reading_of(answer.response), answer.cost_usd

        both = await asyncio.gather(ask(text_a, text_b), ask(text_b, text_a), return_exceptions=True)
        for outcome in both:  # proxy-router down first: then nothing is recorded
            if isinstance(outcome, Unreachable):
                raise outcome
        readings: list[tuple[Reading, float]] = []
        for outcome in both:
            if isinstance(outcome, CallFailed):
                return failed(f"judge {outcome}")
            if isinstance(outcome, BaseException):
                raise outcome
            readings.append(outcome)
        (ab, cost_ab), (ba, cost_ba) = readings
        judged = combine(a, b, ab, ba)
        return Judged(judged.score, judged.reasoning, winner=judged.winner, cost_usd=cost_ab + cost_ba)
