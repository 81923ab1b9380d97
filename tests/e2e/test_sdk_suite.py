"""The official `openpipe` 5.0.0 SDK's own test suite, run against Refinery.

Its authors wrote it against their server, so it is the sharpest statement of "drop-in".
Every group that the platform's current capabilities cover runs in full; the tests that need
capabilities still to come are listed with the reason and deselected by name (never
skipped silently), and the list shrinks as those capabilities land.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openpipe
import pytest

SUITE = Path(openpipe.__file__).parent / "test"

# Groups that run; each must pass whole, but for the named tests below.
GROUPS = [
    "reporting", "update_logged_call_tags", "beta_parsing", "reasoning", "cache", "streaming",
    "test_sync_client.py", "test_async_client.py", "prompted_models",
    "platform/list_datasets", "platform/create_dataset_entries",
    # These read the project's models: the `trained` fixture trains one first.
    "platform/create_model", "platform/get_model", "platform/list_models.py",
]

FINE_TUNED = "needs a deployed fine-tuned model (openpipe:<slug>): training and inference are still to come"
NOT_YET: dict[str, str] = {
    "streaming/test_sync_streaming.py::test_sync_streaming_content_ft_35": FINE_TUNED,
    "streaming/test_sync_streaming.py::test_sync_streaming_content_ft_35_base_sdk": FINE_TUNED,
    "streaming/test_async_streaming.py::test_async_streaming_content_ft_35": FINE_TUNED,
    "streaming/test_async_streaming.py::test_async_streaming_content_ft_35_base_sdk": FINE_TUNED,
    "streaming/test_async_streaming.py::test_async_streaming_content_openai_ft_model": FINE_TUNED,
    "streaming/test_async_streaming.py::test_async_streaming_content_openpipe_ft_model": FINE_TUNED,
    "test_sync_client.py::test_sync_content_llama": FINE_TUNED,
    "test_sync_client.py::test_sync_function_call_llama": FINE_TUNED,
    "test_sync_client.py::test_sync_tool_calls_llama": FINE_TUNED,
    "test_async_client.py::test_async_content_llama": FINE_TUNED,
    "test_async_client.py::test_async_function_call_llama": FINE_TUNED,
    "test_async_client.py::test_async_tool_calls_llama": FINE_TUNED,
    "test_async_client.py::test_async_default_base_url": FINE_TUNED,
}
CACHE_WITH_FT = "loops over gpt-4o-mini and openpipe:test-content-35; the second needs a fine-tuned model " \
    "(cache semantics for plain models are covered by tests/e2e/test_proxy.py::test_cache_modes)"
for _mode in ("sync", "async"):
    for _name in ("openai_call_caches_openpipe_client", "openai_call_caches_base_client",
                  "read_only_avoids_writing_to_cache", "write_only_avoids_reading_from_cache",
                  "write_read_work_together"):
        NOT_YET[f"cache/test_{_mode}_cache.py::test_{_mode}_{_name}"] = CACHE_WITH_FT


def test_openpipe_sdk_suite(stack, api_key, fake_llm, tmp_path, trained):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENPIPE_", "OPENAI_", "ANTHROPIC_"))},
        "OPENPIPE_BASE_URL_LOCAL": stack.api_base,
        "OPENPIPE_API_KEY_LOCAL": api_key,
        "OPENPIPE_BASE_URL": stack.api_base,
        "OPENPIPE_API_KEY": api_key,
        "OPENAI_API_KEY": "sk-fake",
        "OPENAI_BASE_URL": f"{fake_llm}/v1",
        "ANTHROPIC_API_KEY": "ak-fake",
        "ANTHROPIC_BASE_URL": fake_llm,
        "ENVIRONMENT": "test",
    }
    deselect = [arg for node in NOT_YET for arg in ("--deselect", node)]
    print("\nnot yet applicable, by name:\n" + "\n".join(f"  {n}: {r}" for n, r in NOT_YET.items()))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *[str(SUITE / g) for g in GROUPS], *deselect, "-q", "-p", "no:cacheprovider",
         "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function", "--timeout", "60",
         "--rootdir", str(SUITE), "-c", os.devnull],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    tail = "\n".join(proc.stdout.splitlines()[-40:])
    print(tail)
    if proc.returncode != 0:
        pytest.fail(f"the SDK's own suite failed against Refinery:\n{tail}\n{proc.stderr[-2000:]}")
    assert " passed" in tail and "failed" not in tail
