"""``make scale``: ``recsys run`` end to end on generated shops of growing size, cost per stage.

For each size the shop is generated (cached while its shape is unchanged, under
``artifacts/scale/data/``), then ``recsys run --events <file> --out artifacts/scale/runs/<size>`` runs in
a subprocess: it writes its own ``run.json`` with each stage's wall seconds, peak resident memory (the
kernel's high-water mark of that stage's process) and rows, which this module gathers, with the
generation step, into ``artifacts/scale/scale.json`` and ``scale.png``.

Shops keep ~20 events per user (REES46's October 2019 has ~14) and 10 users per product, so the
20 M-event shop has 1 M users and 100 k products. Growth is summarised per stage by the exponent ``b``
of ``cost ~ events^b`` between the smallest and the largest size (1 = linear).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.pipeline_run import RunLayout, run_stage_process
from shared.run_stamp import run_stamp
from zadanie4.evaluation.bench.machine_floor import measure_machine_floor
from zadanie4.evaluation.bench.serving_benchmark import BENCH_REDIS_URL

# ~20 events per user: 1 + Poisson(0.05 x 28) sessions of ~9 views (+ carts and purchases).
SESSIONS_PER_DAY = 0.05
DAYS = 28
# The synthetic shop reaches the production ROC-AUC bar only with far more users per product than a real
# log; like `make demo`, the benchmark states its own bar so that every stage, promotion included, runs.
GATE_MIN_ROC_AUC = "0.70"


@dataclass(frozen=True)
class ShopSize:
    """One generated shop: ``label`` (e.g. ``20m``) and its generator shape."""

    label: str
    users: int
    products: int
    seed: int = 42

    def shape(self) -> dict[str, object]:
        """The generator's options, as `recsys data generate` records them beside the file it wrote."""
        return {
            "users": self.users,
            "products": self.products,
            "days": DAYS,
            "seed": self.seed,
            "sessions_per_day": SESSIONS_PER_DAY,
        }

    def generator_args(self) -> list[str]:
        return [f"--{name.replace('_', '-')}={value}" for name, value in self.shape().items()]


SIZES: dict[str, ShopSize] = {
    "1m": ShopSize("1m", users=50_000, products=5_000),
    "5m": ShopSize("5m", users=250_000, products=25_000),
    "20m": ShopSize("20m", users=1_000_000, products=100_000),
}


def parse_sizes(text: str) -> list[ShopSize]:
    """``1m,5m`` -> the shop sizes, in the order given; unknown labels are an error."""
    labels = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [label for label in labels if label not in SIZES]
    if unknown or not labels:
        raise SystemExit(f"--sizes: choose from {', '.join(SIZES)} (got {text!r})")
    return [SIZES[label] for label in labels]


def growth_exponent(points: Sequence[tuple[float, float]]) -> float | None:
    """``b`` in ``cost ~ events^b`` from the smallest and the largest point; None when undefined."""
    usable = sorted((x, y) for x, y in points if x > 0 and y > 0)
    if len(usable) < 2 or usable[0][0] == usable[-1][0]:
        return None
    (x0, y0), (x1, y1) = usable[0], usable[-1]
    return round(math.log(y1 / y0) / math.log(x1 / x0), 3)


def summarise(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per stage across sizes: growth exponents of wall time and of peak memory (over finished runs)."""
    finished = [run for run in runs if run["status"] == "ok"]
    stage_names = list(dict.fromkeys(stage["name"] for run in finished for stage in run["stages"]))
    per_stage: dict[str, Any] = {}
    for name in stage_names:
        rows = [(run["events"], stage) for run in finished for stage in run["stages"] if stage["name"] == name]
        per_stage[name] = {
            "wall_exponent": growth_exponent([(events, s["wall_s"]) for events, s in rows]),
            "peak_rss_exponent": growth_exponent([(events, s["peak_rss_mib"]) for events, s in rows]),
        }
    total = [(run["events"], run["total_wall_s"]) for run in finished]
    return {"stages": per_stage, "total_wall_exponent": growth_exponent(total)}


def generate_shop(size: ShopSize, data_dir: Path, env: Mapping[str, str]) -> tuple[Path, dict[str, Any]]:
    """The shop's events file (generated unless a file of this shape exists) and the generation's cost."""
    from shared.data_generator import generated_marker, is_generated_file

    events = data_dir / f"events_{size.label}.parquet"
    if is_generated_file(events) and json.loads(generated_marker(events).read_text()).get("config") == size.shape():
        return events, {"name": "generate", "wall_s": 0.0, "peak_rss_mib": 0.0, "rows": None, "cached": True}
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "shared.cli",
        "data",
        "generate",
        *size.generator_args(),
        f"--out={events}",
        f"--ground-truth={data_dir / f'ground_truth_{size.label}'}",
    ]
    started = time.perf_counter()
    code, peak = run_stage_process(command, env)
    if code != 0:
        raise SystemExit(f"generating the {size.label} shop failed (exit {code}); its message is above")
    return events, {"name": "generate", "wall_s": round(time.perf_counter() - started, 2), "peak_rss_mib": peak}


def run_shop(size: ShopSize, out_dir: Path, env: Mapping[str, str], redis_url: str) -> dict[str, Any]:
    """Generate and run one shop; its row of ``scale.json`` (status ``ok`` or the stage that failed)."""
    import pyarrow.parquet as pq

    from zadanie4.evaluation.bench.serving_setup import flush_redis_db

    events, generation = generate_shop(size, out_dir / "data", env)
    n_events = pq.ParquetFile(events).metadata.num_rows
    generation["rows"] = n_events
    run_out = out_dir / "runs" / size.label
    command = [sys.executable, "-m", "shared.cli", "run", "--events", str(events), "--out", str(run_out)]
    print(f"\n=== {size.label}: {n_events:,} events, {size.users:,} users, {size.products:,} products", flush=True)
    report_path = RunLayout(run_out).report_path
    report_path.unlink(missing_ok=True)
    flush_redis_db(redis_url)
    floor = measure_machine_floor()  # before the run: the shared VM's speed varies by day
    started = time.perf_counter()
    code, _ = run_stage_process(command, {**env, **online_store_env(redis_url)})
    wall = time.perf_counter() - started
    report = json.loads(report_path.read_text()) if report_path.exists() else {"stages": []}
    stages = report["stages"]
    return {
        "size": size.label,
        "run": run_stamp(),
        "online_store": redis_url,
        "machine_floor": floor,
        "events": n_events,
        "users": size.users,
        "products": size.products,
        "status": "ok" if code == 0 else f"failed after {stages[-1]['name'] if stages else 'start'}",
        "generation": generation,
        "stages": stages,
        "total_wall_s": round(wall, 2),
        "peak_rss_mib": max((s["peak_rss_mib"] for s in stages), default=0.0),
    }


def online_store_env(redis_url: str) -> dict[str, str]:
    """A shop of millions of events serves from Redis: the run materializes there (the benchmark's own db)."""
    return {"RECSYS_FEATURES_ONLINE_STORE": "redis", "RECSYS_FEATURES_REDIS_URL": redis_url}


def merged_runs(previous: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The runs of this invocation, plus earlier runs of sizes it did not run (``make scale SIZES=20m``
    keeps the 1m and 5m rows), ordered by events."""
    sizes = {run["size"] for run in new}
    kept = [dict(run) for run in previous if run["size"] not in sizes]
    return sorted([*kept, *(dict(run) for run in new)], key=lambda run: run["events"])


def write_plot(runs: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Wall seconds and peak memory per stage against events (log-log), one line per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finished = [run for run in runs if run["stages"]]
    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = list(dict.fromkeys(stage["name"] for run in finished for stage in run["stages"]))
    for name in names:
        points = [(run["events"], s) for run in finished for s in run["stages"] if s["name"] == name]
        xs = [events / 1e6 for events, _ in points]
        time_ax.plot(xs, [s["wall_s"] for _, s in points], marker="o", label=name)
        memory_ax.plot(xs, [s["peak_rss_mib"] / 1024 for _, s in points], marker="o", label=name)
    time_ax.plot(
        [run["events"] / 1e6 for run in finished], [run["total_wall_s"] for run in finished], "k--", label="total"
    )
    for ax, ylabel in ((time_ax, "wall seconds"), (memory_ax, "peak resident memory, GiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("events (millions)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    time_ax.legend(fontsize=7, ncol=2)
    fig.suptitle("recsys run: cost per stage vs events (make scale)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1m,5m,20m", help="comma-separated: 1m, 5m, 20m")
    parser.add_argument("--out", type=Path, default=Path("artifacts/scale"))
    parser.add_argument("--redis-url", default=BENCH_REDIS_URL, help="online store db (FLUSHED per size): %(default)s")
    args = parser.parse_args(argv)
    sizes = parse_sizes(args.sizes)
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "RECSYS_REGISTRY_GATE_MIN_ROC_AUC": GATE_MIN_ROC_AUC}
    report_path = out_dir / "scale.json"
    previous = json.loads(report_path.read_text()).get("runs", []) if report_path.exists() else []
    new_runs: list[dict[str, Any]] = []
    for size in sizes:
        new_runs.append(run_shop(size, out_dir, env, args.redis_url))
        runs = merged_runs(previous, new_runs)
        payload = {
            "run": run_stamp(),
            "command": "make scale SIZES=" + ",".join(run["size"] for run in runs),
            "machine": {"cores": os.cpu_count(), "memory_gib": _memory_gib()},
            "gate_min_roc_auc": float(GATE_MIN_ROC_AUC),
            "runs": runs,
            "growth": summarise(runs),
        }
        report_path.write_text(json.dumps(payload, indent=2) + "\n")  # after every size: a long run keeps its rows
        write_plot(runs, out_dir / "scale.png")
    for run in new_runs:
        print(
            f"{run['size']:>4}: {run['events']:>11,} events  {run['status']:<20} "
            f"{run['total_wall_s']:>8.0f} s  peak {run['peak_rss_mib']:>7,.0f} MiB"
        )
    print(f"wrote {report_path} and {out_dir / 'scale.png'}")
    return 0 if all(run["status"] == "ok" for run in new_runs) else 1


def _memory_gib() -> float | None:
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None
    return round(pages * page_size / 2**30, 1)


if __name__ == "__main__":
    raise SystemExit(main())
