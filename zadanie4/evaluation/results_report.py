"""``make report``: ``docs/RESULTS.md`` (and its PNG figures) from the JSON reports the commands write under
``artifacts/``. No figure in it is typed by hand.

    python -m zadanie4.evaluation.results_report [--artifacts artifacts] [--out docs/RESULTS.md]

The pure part turns the reports (:class:`ReportSet`, parsed JSON) into markdown (:func:`render_results`);
the edge reads the files (:func:`load_reports`), draws the figures and writes the document. Each section
says the command that reproduces it and the commit and time it was measured on (the reports' ``"run"``
stamp, see :mod:`shared.run_stamp`; the file's modification time and "commit unknown" for older files).
A report that is missing gives "not measured yet: run <command>"; one that cannot be read, or has an
unexpected shape, gives a one-line note in its section, and the rest of the document is still written.
The JSON reports are not committed, so a checkout that has run only some commands keeps the other sections
(and README rows) of the previous document as they were written, each with its own commit and date stamp
(:func:`keep_previous_sections`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from zadanie4.evaluation.bench.latency_summary import markdown_table

# Files under the artifacts folder, as their writers name them. Where a report's keys are fixed (checked by
# tests: offline_eval.json, consistency.json, serving.json, ab/report.json), its stamp is in the sibling.
REPORT_PATHS: Mapping[str, str] = {
    "offline": "evaluate/offline_eval.json",  # zadanie1/cli.py evaluate_command
    "offline_details": "evaluate/evaluation_details.json",
    "offline_latent": "evaluate_latent/offline_eval.json",  # make evaluate-latent
    "offline_latent_details": "evaluate_latent/evaluation_details.json",
    "ab": "ab/report.json",  # zadanie4/evaluation/ab/report.py write_outputs
    "ab_details": "ab/details.json",
    "consistency": "features/consistency.json",  # zadanie2/consistency_check.py write_result
    "consistency_details": "features/consistency_details.json",
    "serving": "bench/serving.json",  # zadanie4/evaluation/bench/serving_benchmark.py run_bench
    "serving_details": "bench/serving_details.json",
    "scaling": "bench/scaling.json",  # ... run_scaling
    "loadtest": "load_test_results/test_summary.json",  # zadanie4/evaluation/bench/loadtest_runner.py
    "reliability": "reliability/report.json",  # zadanie4/evaluation/reliability/report.py write_report
    "model_comparison": "train/model_comparison.json",  # zadanie1/training_pipeline.py run_training
    "scale": "scale/scale.json",  # zadanie4/evaluation/scale/pipeline_scale.py main
    "serving_100k": "scale/serving_100k.json",  # zadanie4/evaluation/scale/serving_100k.py main
}
GATE_REPORT_GLOB = "registry/validation_*.json"  # zadanie3/gate_runner.py run_validation, one per version

OFFLINE_COMMAND = "recsys evaluate --out artifacts/evaluate"
OFFLINE_LATENT_COMMAND = "make evaluate-latent"
AB_COMMAND = "make ab"
CONSISTENCY_COMMAND = "recsys features check"
BENCH_COMMAND = "make bench"
LOADTEST_COMMAND = "make loadtest"
RELIABILITY_COMMAND = "make reliability"
TRAIN_COMMAND = "recsys train --out artifacts/train"
GATE_COMMAND = "recsys registry validate challenger"
SCALE_COMMAND = "make scale"
SERVING_100K_COMMAND = "make scale-serving"

# The hard requirements. The A/B bars are those `make ab` applies itself (zadanie4.evaluation.ab.runner.targets).
LATENCY_RATE_RPS = 300.0
LATENCY_P99_LIMIT_MS = 100.0
LATENCY_P99_GOAL_MS = 10.0
MIN_CTR_LIFT = 0.10
AB_MAX_P_VALUE = 0.01
NEW_PRODUCTS_MIN_FIRST_DAY_SHARE = 0.05

FIGURES_DIR = "figures"  # next to RESULTS.md
SERVING_FIGURE = "serving_latency.png"
OFFLINE_FIGURE = "offline_precision.png"

Verdict = Literal["met", "not met", "not measured"]
NOT_MEASURED_VALUE = "–"  # the command column says what to run
Json = Mapping[str, Any]
# What a report of an unexpected shape raises when read as if it had the expected one.
SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)


@dataclass(frozen=True)
class ReportFile:
    """One JSON report: its parsed content, or why there is none (missing: both None)."""

    path: str  # as shown in the document, e.g. artifacts/bench/serving.json
    content: Json | None = None
    problem: str | None = None  # the file exists but is not a readable JSON object
    modified_at: datetime | None = None  # the stamp's fallback

    @property
    def missing(self) -> bool:
        return self.content is None and self.problem is None


@dataclass(frozen=True)
class ReportSet:
    """Every report ``make report`` reads (see ``REPORT_PATHS``); ``gate`` = the newest version's gate report."""

    offline: ReportFile
    offline_details: ReportFile
    offline_latent: ReportFile
    offline_latent_details: ReportFile
    ab: ReportFile
    ab_details: ReportFile
    consistency: ReportFile
    consistency_details: ReportFile
    serving: ReportFile
    serving_details: ReportFile
    scaling: ReportFile
    loadtest: ReportFile
    reliability: ReportFile
    model_comparison: ReportFile
    scale: ReportFile
    serving_100k: ReportFile
    gate: ReportFile


@dataclass(frozen=True)
class Requirement:
    """One row of "Requirements at a glance"."""

    requirement: str
    measured: str
    verdict: Verdict
    commands: tuple[str, ...]


# --- formatting (pure) -------------------------------------------------------------------------------


def fmt_ms(value: Any) -> str:
    """Milliseconds with the precision that matters at that size: 2.25, 40.0, 5,001."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    v = float(value)
    if abs(v) < 10:
        return f"{v:.2f}"
    return f"{v:.1f}" if abs(v) < 100 else f"{v:,.0f}"


def fmt_pct(value: Any, *, signed: bool = False, digits: int = 1) -> str:
    """A share as percent: 0.41 -> "+41.0 %" (signed) or "41.0 %"."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return f"{float(value) * 100:{'+' if signed else ''}.{digits}f} %"


def fmt_metric(value: Any, digits: int = 4) -> str:
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def fmt_count(value: Any) -> str:
    return "n/a" if value is None else f"{round(float(value)):,}"


def fmt_p_value(value: Any) -> str:
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return f"{float(value):.2g}"


def fmt_ci(ci: Any) -> str:
    if not ci or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return "n/a"
    return f"[{fmt_pct(ci[0], signed=True)}, {fmt_pct(ci[1], signed=True)}]"


def cell(value: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> list[str]:
    """A markdown table; ``align`` has one character per column, "r" = right-aligned (numbers)."""
    marks = ["---:" if (align[i : i + 1] == "r") else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _describe_shape_error(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing key {exc}"
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")


# --- stamps (pure) -----------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def measured_on(stamped: ReportFile, fallback: ReportFile | None = None) -> str:
    """The words "measured on commit X at Y", from ``stamped``'s ``"run"``; else the file time, commit unknown.

    ``fallback`` is the report itself when the stamp lives in a sibling (``stamped``) that may be missing.
    """
    run = stamped.content.get("run") if stamped.content is not None else None
    if isinstance(run, Mapping) and run.get("measured_at"):
        commit = run.get("commit")
        return f"measured on commit {f'`{commit}`' if commit else 'unknown'} at {run['measured_at']}"
    for source in (stamped, fallback):
        if source is not None and source.modified_at is not None and not source.missing:
            return f"measured on commit unknown at {_iso(source.modified_at)} (file time)"
    return "measured on commit unknown at an unknown time"


# --- sections (pure) ---------------------------------------------------------------------------------


def section(
    title: str,
    command: str,
    report: ReportFile,
    body: Callable[[Json], list[str]],
    *,
    stamp_from: ReportFile | None = None,
) -> list[str]:
    """``## title — `command`, measured on ...`` and the body; or the one line saying why there is none."""
    if report.content is None:
        head = [f"## {title} — `{command}`", ""]
        if report.problem is not None:
            return [*head, f"could not read `{report.path}`: {report.problem}; rerun `{command}`", ""]
        return [*head, f"not measured yet: run `{command}`", ""]
    try:
        lines = body(report.content)
    except SHAPE_ERRORS as exc:
        return [
            f"## {title} — `{command}`",
            "",
            f"`{report.path}` does not have the expected shape ({_describe_shape_error(exc)}); rerun `{command}`",
            "",
        ]
    stamp = measured_on(stamp_from, report) if stamp_from is not None else measured_on(report)
    return [f"## {title} — `{command}`, {stamp}", "", *lines, ""]


def _content(report: ReportFile) -> Json:
    """The content of a sibling report, or {} when it is missing or unreadable (its figures are extras)."""
    return report.content if report.content is not None else {}


def _params_text(params: Json) -> str:
    shown = {k: v for k, v in params.items() if k != "exclude_seen"}
    text = ", ".join(f"{k}={v}" for k, v in shown.items())
    seen = "seen products excluded" if params.get("exclude_seen") else "seen products allowed"
    return f"({text + '; ' if text else ''}{seen})"


def offline_body(details: Json, figure: str | None = None) -> Callable[[Json], list[str]]:
    def body(payload: Json) -> list[str]:
        k = int(payload["k"])
        lift = payload[f"lift_precision_at_{k}_vs_popularity"]
        names = [f"precision_at_{k}", f"hitrate_at_{k}", f"ndcg_at_{k}", f"map_at_{k}", "coverage"]
        segments = payload["segments"]
        methods = [m for m in segments["all"] if m != "n_users"]
        segment_lifts = []
        for segment, entry in segments.items():
            model_p, popular_p = entry["model"][names[0]], entry["popularity"][names[0]]
            segment_lifts.append(f"{segment} {fmt_pct(model_p / popular_p - 1, signed=True) if popular_p else 'n/a'}")
        stages = details.get("user_stages") or {}
        lines = [
            f"Cutoff {payload['cutoff']}: the ranker, candidates, popularity and features use only the "
            f"{fmt_count(payload['n_train_events'])} events before it; the {fmt_count(payload['n_test_events'])} "
            "events from it on are the holdout. Relevant = any product the user touched in the holdout.",
            "",
            f"**Lift of precision@{k} vs popularity: {fmt_pct(lift, signed=True)}** (all evaluated users); "
            f"per segment: {', '.join(segment_lifts)}.",
        ]
        best = payload.get(f"lift_precision_at_{k}_vs_best_baseline") or {}
        if best:
            lines += [
                "",
                f"**Lift of precision@{k} vs the best baseline** (per segment, random excluded): "
                + ", ".join(
                    f"{seg} {fmt_pct(v['lift'], signed=True)} vs {v['best_baseline']}" for seg, v in best.items()
                )
                + ".",
            ]
        lines += [
            "",
            f"precision@{k} per segment (users: "
            + ", ".join(f"{seg} {fmt_count(entry['n_users'])}" for seg, entry in segments.items())
            + "):",
            "",
            *table(
                ["method", *segments],
                [
                    [m, *(fmt_metric(entry[m][names[0]]) if m in entry else "" for entry in segments.values())]
                    for m in methods
                ],
                "l" + "r" * len(segments),
            ),
            "",
            "All evaluated users:",
            "",
            *table(
                ["method", *(n.replace("_at_", "@") for n in names), "new products' share of hits"],
                [
                    [
                        m,
                        *(fmt_metric(segments["all"][m][n]) for n in names),
                        fmt_metric(segments["all"][m].get("new_product_hit_share")),
                    ]
                    for m in methods
                ],
                "l" + "r" * (len(names) + 1),
            ),
        ]
        baselines = details.get("baselines") or {}
        if baselines:
            lines += [
                "",
                "Peer baselines (`zadanie1/peer_baselines.py`), each setting chosen by precision@"
                f"{k} on a validation window at the end of the training period: "
                + "; ".join(
                    f"{name} {_params_text(facts.get('params', {}))}, fit {facts.get('fit_seconds', 0):g} s"
                    for name, facts in baselines.items()
                )
                + ".",
            ]
        if stages:
            lines += [
                "",
                "cold_users = no event before the cutoff (served by the cold-start path, as in the service); "
                "light_users and returning_users split the others by the cold-start stage; "
                f"evaluated users by stage: {fmt_count(stages.get('cold', 0))} cold, "
                f"{fmt_count(stages.get('light', 0))} light, {fmt_count(stages.get('warm', 0))} warm.",
            ]
        if figure:
            lines += ["", f"![precision@{k} per segment and method]({figure})"]
        return lines

    return body


def ab_body(details: Json) -> Callable[[Json], list[str]]:
    def body(report: Json) -> list[str]:
        setup = details.get("setup") or {}
        lines = []
        if setup:
            lines += [
                f"Control **{setup.get('control')}** vs treatment **{setup.get('treatment')}** (sticky 50/50 "
                f"canary), {setup.get('days')} simulated days, {fmt_count(setup.get('users'))} shoppers, seed "
                f"{setup.get('seed')}, exploration {'on' if setup.get('exploration') else 'off'}.",
                "",
            ]
        lines += [
            f"**Lift {fmt_pct(report['lift'], signed=True)}**, 95 % CI {fmt_ci(report['ci95'])}, "
            f"p = {fmt_p_value(report['p_value'])} ({report['test']}, unit = impression).",
        ]
        robust = details.get("user_bootstrap_ci95")
        if robust:
            lines += ["", f"Per-user bootstrap 95 % CI of the lift (whole users resampled): {fmt_ci(robust)}."]
        arms = report["arms"]
        lines += [
            "",
            *table(
                ["arm", "users", "impressions", "clicks", "CTR"],
                [
                    [
                        arm,
                        fmt_count(a["users"]),
                        fmt_count(a["impressions"]),
                        fmt_count(a["clicks"]),
                        fmt_pct(a["ctr"], digits=3),
                    ]
                    for arm, a in arms.items()
                ],
                "lrrrr",
            ),
            "",
            *table(
                ["segment", "control CTR", "treatment CTR", "lift"],
                [
                    [
                        name,
                        fmt_pct(s["arms"]["control"]["ctr"], digits=3),
                        fmt_pct(s["arms"]["treatment"]["ctr"], digits=3),
                        fmt_pct(s["lift"], signed=True),
                    ]
                    for name, s in report["segments"].items()
                ],
                "lrrr",
            ),
            "",
            f"New products: {fmt_pct(report['new_products']['impression_share_first_day'], digits=2)} of the "
            "impressions shown while a new product was in its first day went to new products; their CTR "
            f"{fmt_pct(report['new_products']['ctr'], digits=3)}.",
        ]
        comparison = details.get("exploration_comparison") or {}
        if comparison.get("total_ctr_change") is not None:
            lines += [
                "",
                f"Total CTR with exploration vs the same run without: "
                f"{fmt_pct(comparison['total_ctr_change'], signed=True)} (95 % CI "
                f"{fmt_ci(comparison.get('total_ctr_change_ci95'))}).",
            ]
        targets = details.get("targets") or {}
        if targets:
            lines += [
                "",
                *table(
                    ["target (make ab's own)", "value", "met"],
                    [[name, t["value"], "yes" if t["met"] else "**no**"] for name, t in targets.items()],
                ),
            ]
        return lines

    return body


def consistency_rows(consistency: Json, details: Json, stamp: str) -> list[tuple[str, Json, str]]:
    """(online store, figures, measured on) for the store in consistency.json and every other store checked."""
    latest = str(consistency["online_store"])
    rows = [(latest, consistency, stamp)]
    for store, entry in sorted((details.get("stores") or {}).items()):
        if store != latest:
            rows.append((str(store), entry, measured_on(ReportFile(path="", content=entry))))
    return rows


def consistency_body(details: ReportFile, report: ReportFile) -> Callable[[Json], list[str]]:
    def body(consistency: Json) -> list[str]:
        rows = consistency_rows(consistency, _content(details), measured_on(details, report))
        lines = [
            "Offline (point-in-time join) vs online (Feast SDK) vs the service's own read path, for sampled "
            "users, products, categories and pairs plus ids that must be absent everywhere.",
            "",
            *table(
                [
                    "online store",
                    "entities",
                    "features",
                    "values compared",
                    "mismatches",
                    "match rate",
                    "max abs diff",
                    "measured",
                ],
                [
                    [
                        store,
                        fmt_count(e["entities_checked"]),
                        fmt_count(e["features_checked"]),
                        fmt_count(e["values_compared"]),
                        fmt_count(e["mismatches"]),
                        fmt_pct(e["match_rate"], digits=4),
                        f"{float(e['max_abs_diff']):.2g}",
                        when.removeprefix("measured "),
                    ]
                    for store, e, when in rows
                ],
                "lrrrrrrl",
            ),
        ]
        examples = _content(details).get("mismatch_examples") or []
        if examples and int(consistency["mismatches"]):
            lines += ["", "First mismatches:", "", *(f"- `{example}`" for example in examples)]
        return lines

    return body


def _rate_label(rate: Any) -> str:
    return "max (closed loop)" if rate is None else f"{float(rate):g}"


def _step_name(target: str, rate: Any) -> str:
    """How serving_details.json names a step in ``flagged_runs`` / ``noisy_runs``."""
    return f"{target}@{'max' if rate is None else f'{float(rate):g}'}"


def serving_body(details: Json, figure: str | None = None) -> Callable[[Json], list[str]]:
    def body(serving: Json) -> list[str]:
        flagged, noisy = set(details.get("flagged_runs") or []), set(details.get("noisy_runs") or [])
        rows = []
        for run in serving["runs"]:
            step = _step_name(run["target"], run["rate_rps"])
            marks = ("flagged" if step in flagged else "") + (" noisy" if step in noisy else "")
            rows.append(
                [
                    run["target"],
                    _rate_label(run["rate_rps"]),
                    f"{float(run['achieved_rps']):,.1f}",
                    fmt_ms(run["p50_ms"]),
                    fmt_ms(run["p95_ms"]),
                    fmt_ms(run["p99_ms"]),
                    f"{fmt_count(run['errors'])} / {fmt_count(run['requests'])}",
                    marks.strip(),
                ]
            )
        floor = (details.get("machine") or {}).get("floor") or {}
        floor_line = (
            [
                f"Machine floor at the start (compare runs by it): a system call {floor['syscall_ns']:,.0f} ns, "
                f"a Python loop iteration {floor['python_loop_iteration_ns']:,.1f} ns, a local socket round trip "
                f"{floor['socket_round_trip_ns'] / 1000:,.1f} µs.",
                "",
            ]
            if {"syscall_ns", "python_loop_iteration_ns", "socket_round_trip_ns"} <= set(floor)
            else []
        )
        lines = [
            f"Open loop (latency from the scheduled send time), {float(serving['duration_s']):g} s per step, "
            f"{serving['cores']} cores. Load generator: {serving['load_generator']}.",
            "",
            *floor_line,
            *table(
                [
                    "target",
                    "rate (req/s)",
                    "achieved (req/s)",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "errors / requests",
                    "step",
                ],
                rows,
                "lrrrrrrl",
            ),
        ]
        # From the runs, not serving.json's ratios: those are rounded to 4 decimals (0.0011 for 1/952).
        p99_at_rate = {
            run["target"]: run["p99_ms"]
            for run in serving["runs"]
            if run["rate_rps"] is not None and float(run["rate_rps"]) == LATENCY_RATE_RPS
        }
        comparisons = [
            _relative(p99_at_rate.get("recommend"), p99_at_rate.get(target), label)
            for target, label in (
                ("health", "the HTTP stack's floor (`health`)"),
                ("feast_feature_server", "Feast's feature server's (same user and products)"),
            )
        ]
        if any(comparisons):
            lines += [
                "",
                f"p99 of /recommend at {LATENCY_RATE_RPS:g} req/s: " + "; ".join(c for c in comparisons if c) + ".",
            ]
        if flagged or noisy:
            lines += [
                "",
                "flagged = the load generator was saturated (part of the latency is its own); noisy = other "
                "processes or the hypervisor took CPU during the step. Rerun on a quiet machine.",
            ]
        if figure:
            lines += ["", f"![/recommend latency per rate]({figure})"]
        return lines

    return body


def _relative(value: Any, reference: Any, label: str) -> str | None:
    """How ``value`` compares with ``reference``: "2.5× <label>" or "1/950 of <label>"; None when either is
    missing or not positive."""
    if value is None or reference is None or float(value) <= 0 or float(reference) <= 0:
        return None
    ratio = float(value) / float(reference)
    return f"{ratio:.3g}× {label}" if ratio >= 1 else f"1/{1 / ratio:.3g} of {label}"


def scaling_body(scaling: Json) -> list[str]:
    conditions = scaling["conditions"]
    rates = [f"{float(r):g}" for r in conditions["rates_rps"]]
    latency = [f"{m}@{r}" for r in rates for m in ("p50_ms", "p99_ms")]
    return [
        f"Warm users, `GET /recommend?k=10`, open loop at {' and '.join(rates)} req/s for "
        f"{float(conditions['duration_s']):g} s each; `max_rps` from a closed-loop step; each row a freshly started "
        f"service ({conditions['pinning']}). `x@r` = x at r req/s, latency in ms, memory (resident) in MiB.",
        "",
        "By candidates scored per request (default catalogue):",
        "",
        markdown_table(scaling["candidates"], ["candidates", *latency, "max_rps", "rss_after_load_mib", "startup_s"]),
        "",
        f"By catalogue size ({conditions['catalogue_candidates']} candidates):",
        "",
        markdown_table(
            scaling["catalogue"],
            ["catalogue_products", "products_cached", *latency, "max_rps", "rss_after_load_mib", "startup_s"],
        ),
    ]


def scale_body(scale: Json) -> list[str]:
    """One row per shop size: events, status, wall time and peak memory per stage, growth exponents."""
    runs = scale["runs"]
    stages = list(dict.fromkeys(stage["name"] for run in runs for stage in run["stages"]))
    header = ["shop", "events", "status", "total s", "peak MiB", *(f"{name} s / MiB" for name in stages)]
    rows = []
    for run in runs:
        by_name = {stage["name"]: stage for stage in run["stages"]}
        per_stage = [
            f"{by_name[n]['wall_s']:,.0f} / {by_name[n]['peak_rss_mib']:,.0f}" if n in by_name else "–" for n in stages
        ]
        rows.append(
            [
                f"{run['size']} ({run['users']:,} users, {run['products']:,} products)",
                fmt_count(run["events"]),
                run["status"],
                f"{float(run['total_wall_s']):,.0f}",
                f"{float(run['peak_rss_mib']):,.0f}",
                *per_stage,
            ]
        )
    growth = scale["growth"]
    exponents = ", ".join(
        f"{name} {g['wall_exponent']:.2f}" for name, g in growth["stages"].items() if g.get("wall_exponent") is not None
    )
    lines = [
        "`recsys run` end to end on generated shops (~20 events per user, 10 users per product); wall seconds and "
        "peak resident memory (MiB) of each stage's process. Goals: 20 M events in ≤ 45 min with ≤ 12 GiB, cost "
        "at most linear in events.",
        "",
        *table(header, rows),
    ]
    if growth.get("total_wall_exponent") is not None:
        lines += [
            "",
            f"Growth exponent b of wall time ~ events^b (1 = linear): total {growth['total_wall_exponent']:.2f}; "
            f"{exponents}.",
        ]
    stamps = [(run["size"], run.get("run") or {}) for run in runs]
    if any(stamp.get("commit") for _, stamp in stamps):
        lines += [
            "",
            "Each size was measured on its own: "
            + "; ".join(
                f"{size} on commit `{stamp.get('commit')}` at {stamp.get('measured_at')}"
                for size, stamp in stamps
                if stamp
            )
            + ".",
        ]
    floors = [(run["size"], run["machine_floor"]) for run in runs if run.get("machine_floor")]
    if floors:
        lines += [
            "",
            "Machine floor before each run (the shared VM's speed varies by day): "
            + "; ".join(f"{size}: {_floor_text(floor)}" for size, floor in floors)
            + ".",
        ]
    return lines


def _floor_text(floor: Json) -> str:
    return (
        f"system call {float(floor['syscall_ns']):,.0f} ns, Python loop iteration "
        f"{float(floor['python_loop_iteration_ns']):,.1f} ns"
    )


def serving_100k_body(report: Json) -> list[str]:
    """Median and range over the repeats, against the goals."""
    figures, goals, subject = report["figures"], report["goals"], report["subject"]
    rows = [
        [
            name,
            f"{figures[name]['median']:g}",
            f"{figures[name]['min']:g} – {figures[name]['max']:g}",
            f"≤ {goals[name]['goal']:g}" if name in goals else "",
            ("met" if goals[name]["met"] else "not met") if name in goals else "",
        ]
        for name in figures
    ]
    floor = report.get("machine", {}).get("floor")
    floor_note = [f"Machine floor before the repeats: {_floor_text(floor)}."] if floor else []
    scorers = sorted({str(s) for s in subject.get("scorers", []) if s})
    if scorers:
        waits = ", ".join(f"{w:g}" for w in subject.get("scorer_wait_s", []) if w is not None)
        floor_note.append(
            f"Ranker evaluated as: {', '.join(scorers)} (seconds from ready until the compiled trees were "
            f"in place, per repeat: {waits}; a first start compiles, later ones load the cached object)."
        )
    profile = report.get("profile") or {}
    if profile.get("service_cpu_ms_per_request") is not None:
        top = ", ".join(
            f"{t['function']} {t['ms_per_request']:g} ms" for t in profile.get("top_self", {}).get("cpu", [])[:4]
        )
        floor_note.append(
            f"Service CPU per request under py-spy at 100 req/s: {profile['service_cpu_ms_per_request']:g} ms"
            + (f"; largest self times: {top}" if top else "")
            + " (stages in `artifacts/scale/serving_100k_profile/profile.txt`)."
        )
    return [
        f"The promoted model of `{subject['run']}` ({fmt_count(subject['events'])} events, "
        f"{fmt_count(subject['products_cached'])} products with features) served from Redis; "
        f"{report['conditions']['repeats']} freshly started services, warm users' `GET /recommend?k=10` open loop; "
        "median and range over the repeats.",
        "",
        *table(["figure", "median", "range", "goal", "verdict"], rows),
        *(["", *floor_note] if floor_note else []),
    ]


def loadtest_body(summary: Json) -> list[str]:
    types = [*summary["per_request_type"].items(), ("overall", summary["overall"])]
    rows = [
        [
            f"**{name}**" if name == "overall" else name,
            fmt_count(s["requests"]),
            fmt_count(s["failures"]),
            f"{float(s['rps']):,.1f}",
            fmt_ms(s["p50_ms"]),
            fmt_ms(s["p95_ms"]),
            fmt_ms(s["p99_ms"]),
            fmt_ms(s["max_ms"]),
        ]
        for name, s in types
    ]
    return [
        f"Locust, {summary['users']} simulated visitors (spawn rate {summary['spawn_rate']}/s) for "
        f"{float(summary['run_time_s']):g} s; service {summary['service']}; pinning: {summary['pinning']}. "
        "Latencies as locust reports them (ms, rounded by locust).",
        "",
        *table(
            ["request type", "requests", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows, "lrrrrrrr"
        ),
    ]


def scenario_key_figure(scenario: Json) -> str:
    """The figures that say why a scenario passed or failed: recovery, p99 during the fault, non-2xx, failures."""
    parts = []
    if scenario.get("recovery_s") is not None:
        parts.append(f"recovery {float(scenario['recovery_s']):.2f} s")
    p99 = (scenario.get("p99_ms") or {}).get("during")
    if p99 is not None:
        parts.append(f"p99 during {fmt_ms(p99)} ms")
    non_2xx = sum(int(v) for v in (scenario.get("non_2xx") or {}).values())
    parts.append(f"{non_2xx:,} non-2xx of {int(scenario['requests']):,}")
    details = scenario.get("details") or {}
    if details.get("error"):
        parts.append(f"error: {details['error']}")
    failed = [name for name, ok in (details.get("checks") or {}).items() if ok is False]
    if failed:
        parts.append("failed checks: " + ", ".join(failed))
    return "; ".join(parts)


def reliability_body(report: Json) -> list[str]:
    scenarios = report["scenarios"]
    passed = sum(bool(s["passed"]) for s in scenarios)
    rows = [
        [s["name"], "PASS" if s["passed"] else "**FAIL**", s["criterion"], scenario_key_figure(s)] for s in scenarios
    ]
    profile = f" ({report['profile']} profile)" if report.get("profile") else ""
    return [
        f"**{passed} of {len(scenarios)} scenarios passed**{profile}, against a real `recsys serve` and a dedicated "
        "Redis.",
        "",
        *table(["scenario", "result", "criterion", "key figures"], rows),
    ]


def model_comparison_body(comparison: Json) -> list[str]:
    k = int(comparison["k"])
    final = comparison["final_model"]
    columns = {
        "roc_auc": "ROC AUC",
        f"precision@{k}": f"precision@{k}",
        f"ndcg@{k}": f"NDCG@{k}",
        f"map@{k}": f"MAP@{k}",
        "training_time_seconds": "train s",
        "inference_time_ms": "µs per row",
    }
    digits = {"training_time_seconds": 2, "inference_time_ms": 2}
    scale = {"inference_time_ms": 1000.0}  # ~0.001 ms per row: shown in µs

    def value(model: Json, column: str) -> str:
        raw = model.get(column)
        return fmt_metric(None if raw is None else float(raw) * scale.get(column, 1.0), digits.get(column, 4))

    rows = []
    for model in comparison["models"]:
        name = f"**{model['model']}** (final)" if model["model"] == final else model["model"]
        rows.append([name, *(value(model, c) for c in columns)])
    return [
        "Every model trains on the same negative-sampled training window and is scored on the same test "
        f"window (all candidates of the sampled users); ranking metrics @{k}.",
        "",
        *table(["model", *columns.values()], rows, "l" + "r" * len(columns)),
    ]


def gate_body(report: Json) -> list[str]:
    champion = report.get("champion_version")
    versus = f"champion v{champion}" if champion is not None else "no champion"
    verdict = "**PASS**" if report["passed"] else f"**FAIL** ({', '.join(report['failed_gates'])})"
    lines = [f"`{report['model_name']}` v{report['version']} vs {versus}: {verdict}."]
    changed = report.get("non_default_thresholds") or {}
    if changed:
        relaxed = ", ".join(f"{name} {v['value']} (default {v['default']})" for name, v in changed.items())
        lines += ["", f"Thresholds changed from the production defaults: {relaxed}."]
    lines += [
        "",
        *table(
            ["gate", "status", "reason"],
            [
                [g["name"], g["status"].upper() if g["status"] != "fail" else "**FAIL**", g["reason"]]
                for g in report["gates"]
            ],
        ),
    ]
    return lines


# --- requirements at a glance (pure) -----------------------------------------------------------------


def _guarded_requirement(
    name: str,
    commands: tuple[str, ...],
    reports: Sequence[ReportFile],
    measure: Callable[[], tuple[str, Verdict]],
) -> Requirement:
    """``measure`` on readable reports; "not measured" with the reason when one of them is missing or odd."""
    for report in reports:
        if report.missing:
            return Requirement(name, NOT_MEASURED_VALUE, "not measured", commands)
        if report.content is None:
            return Requirement(name, f"`{report.path}` unreadable", "not measured", commands)
    try:
        measured, verdict = measure()
    except SHAPE_ERRORS as exc:
        where = ", ".join(f"`{r.path}`" for r in reports)
        return Requirement(name, f"{where}: {_describe_shape_error(exc)}", "not measured", commands)
    return Requirement(name, measured, verdict, commands)


def _commands_text(commands: Sequence[str]) -> str:
    return ", ".join(f"`{c}`" for c in commands)


def _met(ok: bool) -> Verdict:
    return "met" if ok else "not met"


def recommend_run_at(serving: Json, rate_rps: float) -> Json | None:
    """serving.json's open-loop /recommend step at ``rate_rps``, if it was measured."""
    for run in serving["runs"]:
        if run["target"] == "recommend" and run["rate_rps"] is not None and float(run["rate_rps"]) == rate_rps:
            return dict(run)
    return None


def latency_requirement(reports: ReportSet) -> Requirement:
    name = (
        f"inference latency: p99 < {LATENCY_P99_LIMIT_MS:g} ms at {LATENCY_RATE_RPS:g} req/s "
        f"(goal ≤ {LATENCY_P99_GOAL_MS:g} ms)"
    )

    def measure() -> tuple[str, Verdict]:
        assert reports.serving.content is not None
        run = recommend_run_at(reports.serving.content, LATENCY_RATE_RPS)
        if run is None:
            return f"no /recommend step at {LATENCY_RATE_RPS:g} req/s in serving.json", "not measured"
        p99 = run["p99_ms"]
        if p99 is None:
            return "no request answered", "not met"
        goal = f"goal ≤ {LATENCY_P99_GOAL_MS:g} ms " + ("met" if float(p99) <= LATENCY_P99_GOAL_MS else "not met")
        text = (
            f"p99 {fmt_ms(p99)} ms, p50 {fmt_ms(run['p50_ms'])} ms, {fmt_count(run['errors'])} errors of "
            f"{fmt_count(run['requests'])}; {goal}"
        )
        step = _step_name("recommend", LATENCY_RATE_RPS)
        details = _content(reports.serving_details)
        if step in (details.get("flagged_runs") or []):
            text += " (step flagged: load generator saturated)"
        if step in (details.get("noisy_runs") or []):
            text += " (noisy machine)"
        return text, _met(float(p99) < LATENCY_P99_LIMIT_MS)

    return _guarded_requirement(name, (BENCH_COMMAND,), [reports.serving], measure)


def offline_lift_requirement(reports: ReportSet) -> Requirement:
    def measure() -> tuple[str, Verdict]:
        payload = reports.offline.content
        assert payload is not None
        k = int(payload["k"])
        lift = payload[f"lift_precision_at_{k}_vs_popularity"]
        every = payload["segments"]["all"]
        text = (
            f"precision@{k} {fmt_metric(every['model'][f'precision_at_{k}'])} vs popularity "
            f"{fmt_metric(every['popularity'][f'precision_at_{k}'])}: {fmt_pct(lift, signed=True)}"
        )
        return text, _met(lift is not None and float(lift) >= MIN_CTR_LIFT)

    return _guarded_requirement(
        f"CTR lift ≥ {fmt_pct(MIN_CTR_LIFT, signed=True, digits=0)} offline (precision@k vs popularity)",
        (OFFLINE_COMMAND,),
        [reports.offline],
        measure,
    )


def best_baseline_requirement(reports: ReportSet) -> Requirement:
    """Issue 23's bar: the ranker >= 1.10 x the best peer baseline, overall and for returning users."""

    def measure() -> tuple[str, Verdict]:
        payload = reports.offline.content
        assert payload is not None
        k = int(payload["k"])
        best = payload.get(f"lift_precision_at_{k}_vs_best_baseline") or {}
        chosen = {seg: best[seg] for seg in ("all", "returning_users") if seg in best}
        if not chosen:
            return "no peer baselines in offline_eval.json", "not measured"
        text = "; ".join(
            f"{seg} {fmt_pct(v['lift'], signed=True)} vs {v['best_baseline']}" for seg, v in chosen.items()
        )
        return text, _met(all(float(v["lift"]) >= MIN_CTR_LIFT for v in chosen.values()))

    return _guarded_requirement(
        f"ranker ≥ {fmt_pct(MIN_CTR_LIFT, signed=True, digits=0)} over the best peer baseline offline "
        "(precision@k: all users, returning users)",
        (OFFLINE_COMMAND,),
        [reports.offline],
        measure,
    )


def ab_lift_requirement(reports: ReportSet) -> Requirement:
    def measure() -> tuple[str, Verdict]:
        report = reports.ab.content
        assert report is not None
        lift, p = report["lift"], report["p_value"]
        text = f"lift {fmt_pct(lift, signed=True)}, 95 % CI {fmt_ci(report['ci95'])}, p = {fmt_p_value(p)}"
        ok = lift is not None and p is not None and float(lift) >= MIN_CTR_LIFT and float(p) < AB_MAX_P_VALUE
        return text, _met(ok)

    return _guarded_requirement(
        f"CTR lift ≥ {fmt_pct(MIN_CTR_LIFT, signed=True, digits=0)} in the simulated A/B test (p < {AB_MAX_P_VALUE:g})",
        (AB_COMMAND,),
        [reports.ab],
        measure,
    )


def consistency_requirement(reports: ReportSet) -> Requirement:
    def measure() -> tuple[str, Verdict]:
        consistency = reports.consistency.content
        assert consistency is not None
        rows = consistency_rows(consistency, _content(reports.consistency_details), "")
        text = "; ".join(
            f"{fmt_count(e['mismatches'])} mismatches in {fmt_count(e['values_compared'])} values ({store})"
            for store, e, _ in rows
        )
        return text, _met(all(int(e["mismatches"]) == 0 for _, e, _ in rows))

    return _guarded_requirement(
        "offline/online feature consistency: 0 mismatches", (CONSISTENCY_COMMAND,), [reports.consistency], measure
    )


def cold_users_requirement(reports: ReportSet) -> Requirement:
    """New users at least as good as popularity offline, and not worse than control in the A/B test (when run)."""
    name = "cold start, new users: not worse than popularity"
    commands = (OFFLINE_COMMAND, AB_COMMAND)
    measured = [r for r in (reports.offline, reports.ab) if not r.missing]
    if not measured:
        return Requirement(name, NOT_MEASURED_VALUE, "not measured", commands)

    def measure() -> tuple[str, Verdict]:
        texts: list[str] = []
        verdicts: list[bool] = []
        if reports.offline.content is not None:
            payload = reports.offline.content
            k = int(payload["k"])
            cold = payload["segments"]["cold_users"]
            model_p, popular_p = cold["model"][f"precision_at_{k}"], cold["popularity"][f"precision_at_{k}"]
            texts.append(
                f"offline precision@{k} of {fmt_count(cold['n_users'])} new users {fmt_metric(model_p)} vs "
                f"popularity {fmt_metric(popular_p)}"
            )
            verdicts.append(float(model_p) >= float(popular_p))
        if reports.ab.content is not None:
            lift = reports.ab.content["segments"]["cold_users"]["lift"]
            texts.append(f"A/B lift for cold users {fmt_pct(lift, signed=True)}")
            verdicts.append(lift is not None and float(lift) >= 0.0)
        return "; ".join(texts), _met(all(verdicts))

    return _guarded_requirement(name, commands, measured, measure)


def new_products_requirement(reports: ReportSet) -> Requirement:
    def measure() -> tuple[str, Verdict]:
        report = reports.ab.content
        assert report is not None
        share = report["new_products"]["impression_share_first_day"]
        ctr = report["new_products"]["ctr"]
        text = f"{fmt_pct(share, digits=2)} of first-day impressions, their CTR {fmt_pct(ctr, digits=3)}"
        return text, _met(share is not None and float(share) >= NEW_PRODUCTS_MIN_FIRST_DAY_SHARE)

    return _guarded_requirement(
        f"cold start, new products: ≥ {fmt_pct(NEW_PRODUCTS_MIN_FIRST_DAY_SHARE, digits=0)} of impressions on "
        "their first day",
        (AB_COMMAND,),
        [reports.ab],
        measure,
    )


def reliability_requirement(reports: ReportSet) -> Requirement:
    def measure() -> tuple[str, Verdict]:
        report = reports.reliability.content
        assert report is not None
        scenarios = report["scenarios"]
        passed = sum(bool(s["passed"]) for s in scenarios)
        failed = [s["name"] for s in scenarios if not s["passed"]]
        text = f"{passed} of {len(scenarios)} scenarios passed" + (f" (failed: {', '.join(failed)})" if failed else "")
        return text, _met(bool(scenarios) and not failed)

    return _guarded_requirement(
        "faults, bad input, durability, auth: every scenario passes",
        (RELIABILITY_COMMAND,),
        [reports.reliability],
        measure,
    )


def requirements(reports: ReportSet) -> list[Requirement]:
    """The "Requirements at a glance" rows, in the order of the brief."""
    return [
        latency_requirement(reports),
        offline_lift_requirement(reports),
        best_baseline_requirement(reports),
        ab_lift_requirement(reports),
        consistency_requirement(reports),
        cold_users_requirement(reports),
        new_products_requirement(reports),
        reliability_requirement(reports),
    ]


def requirements_table(rows: Sequence[Requirement]) -> list[str]:
    verdicts = {"met": "met", "not met": "**not met**", "not measured": "not measured"}
    return table(
        ["requirement", "measured", "verdict", "command"],
        [[r.requirement, r.measured, verdicts[r.verdict], _commands_text(r.commands)] for r in rows],
    )


# --- the document (pure) -----------------------------------------------------------------------------


def render_results(reports: ReportSet, figures: Mapping[str, str] | None = None) -> str:
    """RESULTS.md from the reports; ``figures`` maps a figure file name to its path relative to RESULTS.md
    (only figures that were drawn are linked)."""
    figures = figures or {}
    lines = [
        "# Measured results",
        "",
        "<!-- Generated by `make report` (python -m zadanie4.evaluation.results_report). Do not edit by hand. -->",
        "Generated by `make report` from the JSON reports the commands write under `artifacts/`; **do not edit "
        "by hand** (rerun the command a section names, then `make report`; the layout is in "
        "`zadanie4/evaluation/results_report.py`). Each section says the commit and time it was measured on "
        "(`+dirty` = the work tree had uncommitted changes).",
        "",
        "## Requirements at a glance",
        "",
        *requirements_table(requirements(reports)),
        "",
    ]
    lines += section(
        "Offline quality",
        OFFLINE_COMMAND,
        reports.offline,
        offline_body(_content(reports.offline_details), figures.get(OFFLINE_FIGURE)),
        stamp_from=reports.offline_details,
    )
    lines += section(
        "Latent-factor shop: offline quality",
        OFFLINE_LATENT_COMMAND,
        reports.offline_latent,
        offline_body(_content(reports.offline_latent_details)),
        stamp_from=reports.offline_latent_details,
    )
    lines += section(
        "Simulated A/B test",
        AB_COMMAND,
        reports.ab,
        ab_body(_content(reports.ab_details)),
        stamp_from=reports.ab_details,
    )
    lines += section(
        "Offline/online feature consistency",
        CONSISTENCY_COMMAND,
        reports.consistency,
        consistency_body(reports.consistency_details, reports.consistency),
        stamp_from=reports.consistency_details,
    )
    lines += section(
        "Serving latency",
        BENCH_COMMAND,
        reports.serving,
        serving_body(_content(reports.serving_details), figures.get(SERVING_FIGURE)),
        stamp_from=reports.serving_details,
    )
    lines += section("Serving scaling", BENCH_COMMAND, reports.scaling, scaling_body)
    lines += section("Load test", LOADTEST_COMMAND, reports.loadtest, loadtest_body)
    lines += section("Reliability", RELIABILITY_COMMAND, reports.reliability, reliability_body)
    lines += section("Model comparison", TRAIN_COMMAND, reports.model_comparison, model_comparison_body)
    lines += section("Validation gate", GATE_COMMAND, reports.gate, gate_body)
    lines += section("Pipeline scale", SCALE_COMMAND, reports.scale, scale_body)
    lines += section("Serving a 100 k-product shop", SERVING_100K_COMMAND, reports.serving_100k, serving_100k_body)
    return "\n".join(lines).rstrip("\n") + "\n"


# --- figure data (pure) ------------------------------------------------------------------------------


def recommend_latency_points(serving: Json) -> list[tuple[float, float, float, float]]:
    """(rate, p50, p95, p99) of /recommend's open-loop steps with answers, by rate."""
    points = [
        (float(r["rate_rps"]), float(r["p50_ms"]), float(r["p95_ms"]), float(r["p99_ms"]))
        for r in serving["runs"]
        if r["target"] == "recommend" and r["rate_rps"] is not None and r["p99_ms"] is not None
    ]
    return sorted(points)


def offline_precision_points(payload: Json) -> dict[str, dict[str, float]]:
    """precision@k per segment and method."""
    k = int(payload["k"])
    return {
        segment: {m: float(entry[m][f"precision_at_{k}"]) for m in ("model", "popularity", "random")}
        for segment, entry in payload["segments"].items()
    }


# --- files (side effects) ----------------------------------------------------------------------------


def shown_path(path: Path) -> str:
    """``path`` relative to the current directory when inside it (so RESULTS.md has no machine's home)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_report(path: Path) -> ReportFile:
    """The parsed JSON object at ``path``; missing, or with a one-line ``problem``, never an exception."""
    shown = shown_path(path)
    if not path.exists():
        return ReportFile(shown)
    try:
        modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        raw = path.read_bytes()
    except OSError as exc:
        return ReportFile(shown, problem=exc.strerror or type(exc).__name__)
    try:
        content = json.loads(raw)
    except json.JSONDecodeError as exc:
        return ReportFile(shown, problem=f"not valid JSON ({exc.msg} at line {exc.lineno})", modified_at=modified)
    except ValueError:  # bytes that are no UTF-8/16/32 text
        return ReportFile(shown, problem="not valid JSON (not text)", modified_at=modified)
    if not isinstance(content, dict):
        return ReportFile(shown, problem=f"not a JSON object but a {type(content).__name__}", modified_at=modified)
    return ReportFile(shown, content=content, modified_at=modified)


def newest_gate_report(artifacts: Path) -> Path:
    """``registry/validation_<version>.json`` of the highest version (the registry's newest)."""

    def version(path: Path) -> int:
        number = path.stem.removeprefix("validation_")
        return int(number) if number.isdigit() else -1

    found = sorted(artifacts.glob(GATE_REPORT_GLOB), key=version)
    return found[-1] if found else artifacts / "registry" / "validation_<version>.json"


def load_reports(artifacts: Path) -> ReportSet:
    files = {name: read_report(artifacts / relative) for name, relative in REPORT_PATHS.items()}
    return ReportSet(**files, gate=read_report(newest_gate_report(artifacts)))


def _plot_serving(points: Sequence[tuple[float, float, float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=110)
    width = 0.25
    for i, (label, color) in enumerate((("p50", "#9ecae1"), ("p95", "#4292c6"), ("p99", "#08519c"))):
        xs = [j + (i - 1) * width for j in range(len(points))]
        ax.bar(xs, [p[i + 1] for p in points], width, label=label, color=color)
    ax.axhline(LATENCY_P99_GOAL_MS, color="#31a354", ls="--", lw=1, label=f"goal {LATENCY_P99_GOAL_MS:g} ms")
    ax.axhline(LATENCY_P99_LIMIT_MS, color="#de2d26", ls="--", lw=1, label=f"limit {LATENCY_P99_LIMIT_MS:g} ms")
    ax.set_yscale("log")
    top = max(LATENCY_P99_LIMIT_MS * 5, max(p[3] for p in points) * 3)  # room for the legend above the bars
    ax.set_ylim(min(p[1] for p in points) / 2, top)
    ax.set_xticks(range(len(points)), [f"{p[0]:g} req/s" for p in points])
    ax.set_ylabel("latency, ms (log scale)")
    ax.set_title("GET /recommend, open loop")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=5, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_offline(points: Mapping[str, Mapping[str, float]], path: Path, k: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    segments = list(points)
    methods = ("model", "popularity", "random")
    colors = {"model": "#1f77b4", "popularity": "#7f7f7f", "random": "#c7c7c7"}
    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=110)
    width = 0.27
    for i, method in enumerate(methods):
        xs = [j + (i - 1) * width for j in range(len(segments))]
        ax.bar(xs, [points[s][method] for s in segments], width, label=method, color=colors[method])
    ax.set_xticks(range(len(segments)), segments)
    ax.set_ylabel(f"precision@{k}")
    ax.set_title(f"Offline precision@{k} on the holdout")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_figures(reports: ReportSet, figures_dir: Path) -> dict[str, str]:
    """Draw the figures whose reports are readable; remove this tool's stale ones (a report that is here but
    gives no figure). A figure whose report is absent stays with the kept section that shows it
    (:func:`keep_previous_sections`). Returns name -> relative path."""
    drawn: dict[str, str] = {}
    plans: list[tuple[str, Callable[[Path], bool]]] = []

    def serving(path: Path) -> bool:
        points = recommend_latency_points(reports.serving.content or {})
        if points:
            _plot_serving(points, path)
        return bool(points)

    def offline(path: Path) -> bool:
        payload = reports.offline.content or {}
        points = offline_precision_points(payload)
        if points:
            _plot_offline(points, path, int(payload["k"]))
        return bool(points)

    if reports.serving.content is not None:
        plans.append((SERVING_FIGURE, serving))
    if reports.offline.content is not None:
        plans.append((OFFLINE_FIGURE, offline))
    for name, draw in plans:
        figures_dir.mkdir(parents=True, exist_ok=True)
        try:
            if draw(figures_dir / name):
                drawn[name] = f"{figures_dir.name}/{name}"
        except SHAPE_ERRORS:  # the section says what is wrong with the report
            pass
    for name, report in ((SERVING_FIGURE, reports.serving), (OFFLINE_FIGURE, reports.offline)):
        if name not in drawn and not report.missing:
            (figures_dir / name).unlink(missing_ok=True)
    return drawn


README_BLOCK_START = "<!-- results:start"
README_BLOCK_END = "<!-- results:end -->"


def with_results_block(readme: str, reports: ReportSet, results_link: str) -> str:
    """The README with the text between its results markers replaced by the requirements table (the
    README's short table is generated like RESULTS.md, never copied by hand). No markers: unchanged."""
    start = readme.find(README_BLOCK_START)
    end = readme.find(README_BLOCK_END)
    if start < 0 or end < start:
        return readme
    start = readme.index("\n", start) + 1  # keep the opening marker line as it is
    block = [
        *requirements_table(requirements(reports)),
        "",
        f"Details, with the commit and date of each: {results_link}",
    ]
    return readme[:start] + "\n".join(block) + "\n" + readme[end:]


NOT_MEASURED_MARK = "not measured yet: run"


def _sections(text: str) -> list[tuple[str, str]]:
    """(title, text) of each ``## `` section, the title being what precedes `` — `` (the part without stamps);
    the text before the first section has the title ``""``."""
    parts: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            parts.append((line[3:].split(" — ")[0].strip(), []))
        parts[-1][1].append(line)
    return [(title, "".join(lines)) for title, lines in parts]


def keep_previous_sections(new: str, old: str) -> str:
    """``new`` where every section it could not measure (its report is absent here) is the measured section
    of the same title in ``old``, unchanged (the stamp says where and when it was measured)."""
    previous = {title: body for title, body in _sections(old) if title and NOT_MEASURED_MARK not in body}
    kept = []
    for title, body in _sections(new):
        replacement = previous.get(title) if title and NOT_MEASURED_MARK in body else None
        kept.append(replacement.rstrip("\n") + "\n\n" if replacement is not None else body)
    return "".join(kept).rstrip("\n") + "\n"


def keep_previous_rows(new_block: str, old_block: str) -> str:
    """The requirements table ``new_block`` with each row not measured here (report absent) taken from
    ``old_block`` when it has a measured row for the same requirement."""

    def requirement(line: str) -> str:
        return line.split("|")[1].strip() if line.startswith("|") and line.count("|") > 2 else ""

    missing = f"| {NOT_MEASURED_VALUE} | not measured |"
    previous = {requirement(line): line for line in old_block.splitlines() if requirement(line) and missing not in line}
    lines = [previous.get(requirement(line), line) if missing in line else line for line in new_block.splitlines()]
    return "\n".join(lines) + ("\n" if new_block.endswith("\n") else "")


def write_results(artifacts: Path, out: Path, readme: Path | None = None) -> tuple[Path, ReportSet]:
    """Read every report under ``artifacts``, draw the figures beside ``out``, write ``out`` and the
    results block of ``readme`` (when given and it has one)."""
    reports = load_reports(artifacts)
    out.parent.mkdir(parents=True, exist_ok=True)
    figures = write_figures(reports, out.parent / FIGURES_DIR)
    previous = out.read_text(encoding="utf-8") if out.is_file() else ""
    document = keep_previous_rows(keep_previous_sections(render_results(reports, figures), previous), previous)
    out.write_text(document, encoding="utf-8")
    if readme is not None and readme.is_file():
        relative = Path(os.path.relpath(out, readme.parent)).as_posix()
        link = f"[{relative}]({relative})"
        text = readme.read_text(encoding="utf-8")
        updated = keep_previous_rows(with_results_block(text, reports, link), text)
        if updated != text:
            readme.write_text(updated, encoding="utf-8")
    return out, reports


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zadanie4.evaluation.results_report", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--artifacts", type=Path, default=None, help="reports folder; default artifacts/")
    parser.add_argument("--out", type=Path, default=Path("docs/RESULTS.md"), help="default %(default)s")
    parser.add_argument("--readme", type=Path, default=None, help="README whose results block to rewrite")
    args = parser.parse_args(argv)
    if args.artifacts is None:
        from shared.settings import load_shared_settings

        args.artifacts = load_shared_settings().artifacts_dir
    out, reports = write_results(args.artifacts, args.out, args.readme)
    found = [f for f in vars(reports).values() if isinstance(f, ReportFile) and not f.missing]
    unreadable = [f for f in found if f.content is None]
    print(f"wrote {out} from {len(found) - len(unreadable)} reports under {args.artifacts}")
    for report in unreadable:
        print(f"  note: could not read {report.path}: {report.problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
