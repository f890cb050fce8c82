"""Run every benchmark in turn: ``python -m benchmarks`` (``--quick`` for smaller sizes)."""

from __future__ import annotations

import importlib
import sys

MODULES = (
    "pricing",
    "scenarios",
    "margin",
    "stress",
    "revaluation_accuracy",
    "simm",
    "stream",
    "market_rate",
    "sod_load",
    "reproduce",
    "api",
    "backtest",
)
QUICK_ARGS = {
    "pricing": ["--n", "200000", "--sample", "500"],
    "scenarios": ["--quick"],
    "margin": ["--quick"],
    "stress": ["--quick"],
    "revaluation_accuracy": ["--rows", "20", "--scenarios-sampled", "100"],
    "simm": ["--quick"],
    "stream": ["--quick"],
    "market_rate": ["--quick"],
    "sod_load": ["--quick"],
    "reproduce": ["--quick"],
    "api": ["--quick"],
    "backtest": ["--quick"],
}


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    status = 0
    for name in MODULES:
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            print(f"[skip] benchmarks.{name}: {exc}")
            continue
        print(f"\n=== benchmarks.{name} ===", flush=True)
        status |= module.main(QUICK_ARGS.get(name, []) if quick else [])
    return status


if __name__ == "__main__":
    raise SystemExit(main())
