"""`python -m bench.vllm_smoke BASE_DIR ADAPTER_DIR`: the vLLM serving path on a real GPU, end to end.

Not part of the test suite (the unit tests run the vLLM backend against a fake ``vllm``): this is the check that
only a machine with vLLM and CUDA can make. It builds :class:`inference.vllm_backend.VllmEngine` on a local
SmolLM2-135M-Instruct directory (any transformers directory of the model: the converted cache under
``<data dir>/models`` or a hub snapshot), loads one LoRA adapter directory trained on it, and prints:

- engine start and adapter load (registration plus the one-token warm-up);
- time to first token and decode tokens/s of single requests, on the base and through the adapter;
- adapter switch: vLLM has no switch step (adapters are mixed within a batch), so this is the time to first
  token of a request whose adapter differs from the previous request's, minus that of one whose adapter is the
  same; about zero is the expected answer;
- aggregate tokens/s of ``--concurrency`` requests at once, half on the base and half through the adapter.

Exits with status 2 and a message when vLLM or CUDA is missing, before touching the model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MESSAGES = [{"role": "user", "content": "Tell me about the sea in a few sentences."}]


def _one(engine, adapter: str | None, max_tokens: int) -> tuple[float, float, int]:
    """(seconds to the first text, total seconds, completion tokens) of one streamed request."""
    from inference.engine import GenerationParams

    started = time.perf_counter()
    first = None
    tokens = 0
    for piece in engine.stream_pieces(adapter, MESSAGES, None, GenerationParams(max_tokens=max_tokens,
                                                                                temperature=0.0)):
        if piece.delta and first is None:
            first = time.perf_counter() - started
        tokens += piece.completion_tokens
    total = time.perf_counter() - started
    return (first if first is not None else total), total, tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_dir", type=Path, help="local directory of HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("adapter_dir", type=Path, help="a LoRA adapter directory trained on that base")
    parser.add_argument("--base-id", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--requests", type=int, default=12, help="sequential requests (after one warm-up)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    args = parser.parse_args()

    from inference.backends import cuda_available, vllm_installed

    if not vllm_installed():
        print("vllm_smoke: the `vllm` package is not installed here (it is CUDA-only on PyPI); nothing to measure.",
              file=sys.stderr)
        return 2
    if not cuda_available():
        print("vllm_smoke: vLLM is installed but torch sees no CUDA device; nothing to measure.", file=sys.stderr)
        return 2
    for path in (args.base_dir, args.adapter_dir):
        if not path.is_dir():
            print(f"vllm_smoke: {path} is not a directory", file=sys.stderr)
            return 2

    from inference.vllm_backend import VllmEngine

    rows: list[tuple[str, str, str]] = []
    started = time.perf_counter()
    engine = VllmEngine(args.base_dir, args.base_id, gpu_memory_utilization=args.gpu_memory_utilization)
    try:
        rows.append(("engine start", f"{time.perf_counter() - started:.1f} s", f"max context {engine.max_context}"))
        load_s = engine.load_adapter("smoke", args.adapter_dir)
        rows.append(("adapter load", f"{load_s * 1000:.0f} ms", "add_lora + one-token warm-up"))

        _one(engine, None, args.max_tokens)  # warm-up: CUDA graphs, caches
        # Pairs of the same adapter then a change: (None, None), ("smoke", "smoke"), ...
        order = [None if (i // 2) % 2 == 0 else "smoke" for i in range(args.requests)]
        previous: str | None = None
        ttft = {"same": [], "switched": []}
        by_adapter: dict[str | None, list[tuple[float, float, int]]] = {None: [], "smoke": []}
        for adapter in order:
            result = _one(engine, adapter, args.max_tokens)
            by_adapter[adapter].append(result)
            ttft["same" if adapter == previous else "switched"].append(result[0] * 1000)
            previous = adapter
        for adapter, label in ((None, "base"), ("smoke", "adapter")):
            results = by_adapter[adapter]
            if not results:
                continue
            first = statistics.median(r[0] for r in results) * 1000
            decode = statistics.median(r[2] / max(r[1] - r[0], 1e-9) for r in results)
            rows.append((f"time to first token ({label})", f"p50 {first:.1f} ms", f"{len(results)} requests"))
            rows.append((f"decode ({label})", f"{decode:,.0f} tokens/s", f"{args.max_tokens}-token cap, one at a time"))
        if ttft["same"] and ttft["switched"]:
            switch = statistics.median(ttft["switched"]) - statistics.median(ttft["same"])
            rows.append(("adapter switch", f"{switch:+.1f} ms", "TTFT after a change of adapter minus without"))

        def mixed(i: int) -> int:
            return _one(engine, None if i % 2 else "smoke", args.max_tokens)[2]

        with ThreadPoolExecutor(args.concurrency) as pool:
            started = time.perf_counter()
            tokens = sum(pool.map(mixed, range(args.concurrency)))
            wall = time.perf_counter() - started
        rows.append(("concurrent", f"{tokens / wall:,.0f} tokens/s",
                     f"{args.concurrency} requests at once, base and adapter mixed, {wall:.2f} s"))
    finally:
        engine.close()

    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"\nvLLM serving of {args.base_id} with one LoRA adapter")
    for r in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
