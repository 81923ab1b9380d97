"""Which upstream a chat completion goes to, decided from its model name."""

from __future__ import annotations

from dataclasses import dataclass

EXTERNAL_PREFIXES = ("anthropic:", "gemini:")


@dataclass(frozen=True, slots=True)
class Route:
    provider: str  # openai, anthropic, gemini, openpipe, or a custom provider name
    upstream_model: str


def route_for(model: str) -> Route:
    """`openai:X` and plain names → OpenAI; `openpipe:<provider>/<model>` → that provider;
    `openpipe:<slug>` → a fine-tuned model; `anthropic:`/`gemini:` → those providers."""
    if model.startswith("openai:"):
        return Route("openai", model.removeprefix("openai:"))
    for prefix in EXTERNAL_PREFIXES:
        if model.startswith(prefix):
            return Route(prefix[:-1], model.removeprefix(prefix))
    if model.startswith("openpipe:"):
        rest = model.removeprefix("openpipe:")
        if "/" in rest:
            provider, _, upstream_model = rest.partition("/")
            return Route(provider, upstream_model)
        return Route("openpipe", rest)
    return Route("openai", model)


def no_upstream(model: str, provider: str, why_not: str | None) -> tuple[int, str]:
    """(status, message) for a call whose model resolved to no upstream; `why_not` from model-registry."""
    if why_not:
        return (503 if "unavailable" in why_not else 400), f"The model `{model}` {why_not}"
    if provider == "openpipe":
        return 404, f"The model `{model}` does not exist"
    return 400, f"No `{provider}` provider is configured for this project"
