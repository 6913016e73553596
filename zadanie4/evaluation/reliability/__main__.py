"""``python -m zadanie4.evaluation.reliability`` (``make reliability``): every reliability scenario against a real
``recsys serve`` and a dedicated Redis on loopback, then ``artifacts/reliability/report.{json,md}``.

Scenarios come from ``scenarios_faults.SCENARIOS`` and, when that module exists,
``scenarios_inputs.SCENARIOS``. ``--only`` picks scenarios by a part of their function name,
``--quick`` runs the short profile. Exit status 1 when any scenario failed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from zadanie4.evaluation.bench.open_loop_load import collector_paused
from zadanie4.evaluation.reliability.harness import OUT_DIR, Context, prepare_context
from zadanie4.evaluation.reliability.report import ScenarioResult, markdown_table, write_report

Scenario = Callable[[Context], ScenarioResult]
SCENARIO_MODULES = (
    "zadanie4.evaluation.reliability.scenarios_faults",
    "zadanie4.evaluation.reliability.scenarios_inputs",
)


def all_scenarios() -> list[Scenario]:
    """Every scenario of the scenario modules that exist, in module order."""
    found: list[Scenario] = []
    for name in SCENARIO_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        found.extend(getattr(module, "SCENARIOS", []))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zadanie4.evaluation.reliability", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default artifacts/reliability)")
    parser.add_argument("--quick", action="store_true", help="short profile (seconds per scenario)")
    parser.add_argument("--only", action="append", default=[], help="run scenarios whose function name contains this")
    args = parser.parse_args(argv)

    scenarios = [s for s in all_scenarios() if not args.only or any(o in s.__name__ for o in args.only)]
    if not scenarios:
        print("no scenario matches", file=sys.stderr)
        return 2
    started = time.perf_counter()
    print(f"preparing: dedicated redis-server, online store, registry -> {args.out}", flush=True)
    ctx = prepare_context(args.out, quick=args.quick)
    results: list[ScenarioResult] = []
    timings: dict[str, float] = {"prepare_s": round(time.perf_counter() - started, 1)}
    timings.update({f"prepare_{k}": round(v, 1) for k, v in ctx.timings.items()})
    try:
        for scenario in scenarios:
            began = time.perf_counter()
            print(f"scenario {scenario.__name__} ...", flush=True)
            # The scenarios' clients measure in this process: a full collection here (the heap grows with
            # every scenario's samples) stalled them for 40-100 ms, counted as the service's latency.
            with collector_paused():
                result = scenario(ctx)
            timings[scenario.__name__ + "_s"] = round(time.perf_counter() - began, 1)
            results.append(result)
            print(f"  {'PASS' if result.passed else 'FAIL'} {result.name}: {result.details}", flush=True)
    finally:
        ctx.close()
    timings["total_s"] = round(time.perf_counter() - started, 1)
    path = write_report(results, args.out, extra={"profile": "quick" if args.quick else "full", "timings": timings})
    print(markdown_table(results))
    print(f"wrote {path} and {path.with_suffix('.md')} in {timings['total_s']:.0f} s")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
