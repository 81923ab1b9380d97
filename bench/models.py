"""`python -m bench.models`: training and serving figures for the offline base model on this machine.

Trains a LoRA SFT adapter on 40 short examples (training tokens per second), then serves it and a
second adapter from one engine: time to first token, generation tokens per second, and the cost of
switching adapters between requests. Uses the same code the trainer and inference services run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.load import pct
from bench.scenarios import progress


def _rows(n: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"PINEAPPLE {2 * i}"}]} for i in range(n)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    try:
        from inference.engine import Engine, GenerationParams
        from refinery.ml.base_models import DEFAULT_BASE, resolve_base_model
        from trainer.training import SftParams, train_sft
    except ImportError as exc:
        print(f"model figures need the ML extra (make install-ml): {exc}")
        return 0
    cache = Path(os.environ.get("REFINERY_MODEL_CACHE_DIR", "~/.cache/refinery-test-models")).expanduser()
    tmp = Path(tempfile.mkdtemp(prefix="refinery-bench-models-"))
    rows: list[list[str]] = []
    try:
        progress(f"resolving {DEFAULT_BASE} (converted once into {cache})")
        base_dir = resolve_base_model(DEFAULT_BASE, cache)
        progress(f"LoRA SFT: {args.rows} rows x {args.epochs} epochs")
        metrics = train_sft(base_dir, DEFAULT_BASE, _rows(args.rows), [], tmp / "sft",
                            SftParams(epochs=args.epochs))
        rows.append(["training (LoRA SFT, r=16, all linear)", f"{metrics['tokens_per_second']:,.0f} tokens/s",
                     f"{metrics['train_tokens']:,} tokens in {metrics['seconds']:.1f} s"])
        adapter = tmp / "sft" / "adapter"
        twin = tmp / "twin"
        shutil.copytree(adapter, twin)
        engine = Engine(base_dir, DEFAULT_BASE)
        for name, path in (("a", adapter), ("b", twin)):
            load_s = engine.load_adapter(name, path)
        rows.append(["adapter load", f"{load_s * 1000:.0f} ms", "from local disk"])
        params = GenerationParams(max_tokens=args.max_tokens, temperature=0)
        ttfts, rates, switches = [], [], []
        messages = [{"role": "user", "content": "Tell me about the sea in a few sentences."}]
        progress(f"serving: {args.requests} requests alternating two adapters")
        for i in range(args.requests + 1):
            name = "a" if i % 2 == 0 else "b"
            started = time.perf_counter()
            first = None
            tokens = 0
            for piece in engine.stream_pieces(name, messages, None, params):
                if piece.delta and first is None:
                    first = time.perf_counter() - started
                tokens += piece.completion_tokens
            total = time.perf_counter() - started
            if i == 0:
                continue  # warm-up
            ttfts.append((first or total) * 1000)
            rates.append(tokens / total)
            switches.append(engine.last_switch_seconds * 1000)
        rows.append(["time to first token", f"p50 {pct(ttfts, 50):.0f} ms", f"max {max(ttfts):.0f} ms"])
        rows.append(["generation", f"{pct(rates, 50):.1f} tokens/s", f"{args.max_tokens}-token answers, one at a time"])
        rows.append(["adapter switch", f"p50 {pct(switches, 50):.1f} ms", f"max {max(switches):.1f} ms"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"\nModels on this machine ({os.cpu_count()} CPU(s), CPU build of torch; SmolLM2-135M-Instruct)")
    for r in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
