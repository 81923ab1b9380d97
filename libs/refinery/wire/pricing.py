"""List prices of well-known upstream models, for the cost of a logged call where known.

USD per million tokens (input, output). Matched by the longest known prefix of the model
name without a provider prefix, so dated snapshots (`gpt-4o-2024-08-06`) price like their
family. Unknown models have no cost rather than a guessed one.
"""

from __future__ import annotations

from refinery.events.request_logs import Usage

PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o1-mini": (1.10, 4.40),
    "o1": (15.00, 60.00),
    "o3-mini": (1.10, 4.40),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-opus": (15.00, 75.00),
    "claude-3-haiku": (0.25, 1.25),
    "gemini-1.5-flash": (0.075, 0.30),
    "gemini-1.5-pro": (1.25, 5.00),
}
_BY_LENGTH = sorted(PRICES_PER_MTOK, key=len, reverse=True)


def cost_usd(model: str | None, usage: Usage | None, prices: tuple[float, float] | None = None) -> float | None:
    """The call's cost: at `prices` (the project's own for the model, USD per million tokens in and
    out) when given, else at the list price of the model's family, else None."""
    if not model or usage is None:
        return None
    if prices is not None:
        return _priced(usage, *prices)
    name = model.split(":", 1)[1] if ":" in model else model
    for prefix in _BY_LENGTH:
        if name.startswith(prefix):
            return _priced(usage, *PRICES_PER_MTOK[prefix])
    return None


def _priced(usage: Usage, price_in: float, price_out: float) -> float:
    return round((usage.prompt_tokens * price_in + usage.completion_tokens * price_out) / 1e6, 10)
