"""The A/B test's outputs: ``report.json`` (the fixed schema of issue 8), ``details.json``, ``report.md``
and ``ctr_over_time.png`` (CTR per arm per time bucket, with 95 % intervals).

``report.json`` holds exactly::

    {"arms": {"control": {"users", "impressions", "clicks", "ctr"}, "treatment": {...}},
     "lift", "ci95", "p_value", "test",
     "segments": {"cold_users": {"arms": {...}, "lift"}, "warm_users": {...}},
     "new_products": {"impression_share_first_day", "ctr"}}

Everything else (cross-checks, per-user bootstrap interval, reasons, the exploration comparison,
the run's setup, the commit and time of the run under ``run``) goes to ``details.json`` and ``report.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from shared.run_stamp import run_stamp
from zadanie4.evaluation.ab.simulation import ARMS, ArmCounts, ExperimentSummary
from zadanie4.evaluation.ab.statistics import ProportionTest, two_proportion_z_test

REPORT_FILE: Final = "report.json"
DETAILS_FILE: Final = "details.json"
MARKDOWN_FILE: Final = "report.md"
PLOT_FILE: Final = "ctr_over_time.png"
SEGMENT_KEYS: Final = {"cold": "cold_users", "warm": "warm_users"}


def _finite(value: float) -> float | None:
    """JSON has no inf/NaN: those become null."""
    return float(value) if math.isfinite(value) else None


def arm_entry(counts: ArmCounts) -> dict[str, Any]:
    return {"users": counts.users, "impressions": counts.impressions, "clicks": counts.clicks, "ctr": counts.ctr}


def relative_lift(arms: Mapping[str, ArmCounts]) -> float | None:
    control, treatment = arms["control"].ctr, arms["treatment"].ctr
    return _finite(treatment / control - 1.0) if control > 0 else None


def proportion_test(arms: Mapping[str, ArmCounts]) -> ProportionTest | None:
    c, t = arms["control"], arms["treatment"]
    if c.impressions == 0 or t.impressions == 0:
        return None
    return two_proportion_z_test(c.clicks, c.impressions, t.clicks, t.impressions)


def build_report(summary: ExperimentSummary) -> dict[str, Any]:
    """``report.json`` content (exact keys of issue 8) from the service-side summary."""
    test = proportion_test(summary.arms)
    return {
        "arms": {arm: arm_entry(summary.arms[arm]) for arm in ARMS},
        "lift": relative_lift(summary.arms),
        "ci95": [_finite(test.ci95[0]), _finite(test.ci95[1])] if test else [None, None],
        "p_value": test.p_value if test else None,
        "test": "two-proportion z-test",
        "segments": {
            key: {
                "arms": {arm: arm_entry(summary.segments[segment][arm]) for arm in ARMS},
                "lift": relative_lift(summary.segments[segment]),
            }
            for segment, key in SEGMENT_KEYS.items()
        },
        "new_products": {
            "impression_share_first_day": summary.new_products.impression_share_first_day,
            "ctr": summary.new_products.ctr,
        },
    }


def user_bootstrap_ci(per_user: pd.DataFrame, *, resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """95 % percentile interval of the lift when whole users are resampled (impressions of one user are
    correlated, so this interval is the honest one when it is wider than the z-test's)."""
    rng = np.random.default_rng(seed)
    ratios = []
    parts = {arm: per_user[per_user["arm"] == arm] for arm in ARMS}
    if any(len(p) < 2 for p in parts.values()):
        return None
    sums = {}
    for arm, part in parts.items():
        draws = rng.integers(0, len(part), size=(resamples, len(part)))
        clicks = part["clicks"].to_numpy()[draws].sum(axis=1)
        impressions = part["impressions"].to_numpy()[draws].sum(axis=1)
        sums[arm] = clicks / np.maximum(impressions, 1)
    control = sums["control"]
    ok = control > 0
    ratios = sums["treatment"][ok] / control[ok] - 1.0
    if ratios.size == 0:
        return None
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def _funnel(counts: ArmCounts) -> dict[str, int]:
    return {
        "impressions": counts.impressions,
        "clicks": counts.clicks,
        "carts": counts.carts,
        "purchases": counts.purchases,
    }


def cross_check(
    service: ExperimentSummary, simulator: ExperimentSummary, metrics_delta: Mapping[str, Mapping[str, int]]
) -> dict[str, Any]:
    """Service log vs simulator (per arm) and service log vs the service's /metrics counters (per variant)."""
    arms = {}
    for arm in ARMS:
        s, m = service.arms[arm], simulator.arms[arm]
        arms[arm] = {"service_log": _funnel(s), "simulator": _funnel(m), "match": _funnel(s) == _funnel(m)}
    metric_names = {
        "impression": "recsys_impressions_total",
        "click": "recsys_clicks_total",
        "cart": "recsys_carts_total",
        "purchase": "recsys_purchases_total",
    }
    variants = {}
    for variant in sorted(set(service.per_variant) | {v for d in metrics_delta.values() for v in d}):
        log_counts = service.per_variant.get(variant, {})
        metric_counts = {t: int(metrics_delta.get(name, {}).get(variant, 0)) for t, name in metric_names.items()}
        logged = {t: int(log_counts.get(t, 0)) for t in metric_names}
        if not any(logged.values()) and not any(metric_counts.values()):
            continue
        variants[variant] = {"service_log": logged, "metrics": metric_counts, "match": logged == metric_counts}
    return {
        "arms": arms,
        "variants": variants,
        "all_match": all(a["match"] for a in arms.values()) and all(v["match"] for v in variants.values()),
    }


def exploration_comparison(
    with_exploration: Mapping[str, Any],
    without: Mapping[str, Any],
    *,
    with_variants: Mapping[str, Any] | None = None,
    without_variants: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Total CTR (both arms and per arm) and the new products' first-day share, with vs without exploration.

    The 95 % CI and p-value of the total CTR change treat the two runs as independent samples, which is
    conservative: they share the seed, the users and the click draws. With both runs' per-variant counts
    (``cross_check["variants"]``) the change is also given for the pages the policies served, i.e.
    without the pages the service answered from its degraded fallback (their number differs from run
    to run with the service's stalls, not with exploration).
    """

    def totals(report: Mapping[str, Any]) -> tuple[int, int]:
        arms = report["arms"].values()
        return sum(a["clicks"] for a in arms), sum(a["impressions"] for a in arms)

    out: dict[str, Any] = {}
    for name, report in (("with_exploration", with_exploration), ("without_exploration", without)):
        clicks, impressions = totals(report)
        out[name] = {
            "total_ctr": clicks / impressions if impressions else 0.0,
            "control_ctr": report["arms"]["control"]["ctr"],
            "treatment_ctr": report["arms"]["treatment"]["ctr"],
            "new_products_impression_share_first_day": report["new_products"]["impression_share_first_day"],
            "new_products_ctr": report["new_products"]["ctr"],
        }
    base = out["without_exploration"]
    for key in ("control_ctr", "treatment_ctr"):
        out[f"{key}_change"] = _finite(out["with_exploration"][key] / base[key] - 1.0) if base[key] else None
    out |= _change_test("total_ctr_change", totals(without), totals(with_exploration))
    if with_variants is not None and without_variants is not None:
        served = [_served_by_policies(v) for v in (without_variants, with_variants)]
        out["served_by_policies"] = {
            "without_exploration_ctr": served[0][0] / served[0][1] if served[0][1] else None,
            "with_exploration_ctr": served[1][0] / served[1][1] if served[1][1] else None,
            "fallback_impressions": {
                "without_exploration": _fallback_impressions(without_variants),
                "with_exploration": _fallback_impressions(with_variants),
            },
        }
        out["served_by_policies"] |= _change_test("total_ctr_change", served[0], served[1])
    return out


def _served_by_policies(variants: Mapping[str, Any]) -> tuple[int, int]:
    """(clicks, impressions) in the service's log on pages a policy served (every variant but fallback)."""
    kept = [v["service_log"] for name, v in variants.items() if name != "fallback"]
    return sum(int(v["click"]) for v in kept), sum(int(v["impression"]) for v in kept)


def _fallback_impressions(variants: Mapping[str, Any]) -> int:
    return int(variants.get("fallback", {}).get("service_log", {}).get("impression", 0))


def _change_test(key: str, before: tuple[int, int], after: tuple[int, int]) -> dict[str, Any]:
    """Relative CTR change ``after`` vs ``before`` ((clicks, impressions) each) with its CI and p-value."""
    if before[1] <= 0 or after[1] <= 0:
        return {}
    test = two_proportion_z_test(before[0], before[1], after[0], after[1])
    return {
        key: _finite(test.lift),
        f"{key}_ci95": [_finite(test.ci95[0]), _finite(test.ci95[1])],
        f"{key}_p_value": test.p_value,
    }


# --- files ----------------------------------------------------------------------------------------------


def write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, allow_nan=False, default=_json_default) + "\n", encoding="utf-8")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def plot_ctr_over_time(series: pd.DataFrame, path: Path, *, bucket_hours: float) -> Path:
    """CTR per arm per time bucket (simulated days on x) with a 95 % normal interval band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    colors = {"control": "#7f7f7f", "treatment": "#1f77b4"}
    for arm in ARMS:
        part = series[series["arm"] == arm].sort_values("bucket_start_s")
        part = part[part["impressions"] > 0]
        if part.empty:
            continue
        x = (part["bucket_start_s"].to_numpy() + bucket_hours * 1800.0) / 86_400.0
        n = part["impressions"].to_numpy(dtype=float)
        ctr = part["clicks"].to_numpy(dtype=float) / n
        half = 1.96 * np.sqrt(ctr * (1 - ctr) / n)
        ax.plot(x, ctr * 100, marker="o", ms=3, color=colors[arm], label=arm)
        low = np.clip(ctr - half, 0.0, None)
        ax.fill_between(x, low * 100, (ctr + half) * 100, color=colors[arm], alpha=0.18, lw=0)
    ax.set_xlabel("simulated day of the run")
    ax.set_ylabel("CTR per impression, %")
    ax.set_title(f"CTR per arm ({bucket_hours:g} h buckets, 95 % intervals)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.1%}" if signed else f"{value:.2%}"


def _ci_text(ci: list[float | None] | None) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "n/a"
    return f"[{_pct(ci[0], True)}, {_pct(ci[1], True)}]"


def render_markdown(report: Mapping[str, Any], details: Mapping[str, Any]) -> str:
    """``report.md``: the result first, then segments, new products, cross-checks and the setup."""
    setup = details["setup"]
    lines = [
        "# A/B test: personalised recommendations vs control (simulated shoppers, real service)",
        "",
        f"Control **{setup['control']}** vs treatment **{setup['treatment']}**, 50/50 by the service's sticky "
        f"canary; {setup['days']:g} simulated days, {setup['users']:,} shoppers, seed {setup['seed']}, "
        f"exploration {'on' if setup['exploration'] else 'off'}. CTR per arm from the service's "
        f"{details['source']}.",
        "",
        f"**Lift {_pct(report['lift'], True)}**, 95 % CI [{_pct(report['ci95'][0], True)}, "
        f"{_pct(report['ci95'][1], True)}], p = {report['p_value']:.2e} ({report['test']}, unit = impression)."
        if report["p_value"] is not None
        else "**Lift: n/a** (an arm had no impressions).",
        "",
        "| arm | users | impressions | clicks | CTR |",
        "|---|---:|---:|---:|---:|",
    ]
    for arm in ARMS:
        a = report["arms"][arm]
        lines.append(f"| {arm} | {a['users']:,} | {a['impressions']:,} | {a['clicks']:,} | {a['ctr']:.3%} |")
    robust = details.get("user_bootstrap_ci95")
    if robust:
        lines += [
            "",
            f"Per-user bootstrap 95 % CI of the lift (whole users resampled; impressions of one user are "
            f"correlated): [{_pct(robust[0], True)}, {_pct(robust[1], True)}].",
        ]
    targets = details.get("targets", {})
    if targets:
        lines += ["", "| target | result | met |", "|---|---|---|"]
        for name, entry in targets.items():
            lines.append(f"| {name} | {entry['value']} | {'yes' if entry['met'] else '**no**'} |")
    lines += ["", f"![CTR over time]({PLOT_FILE})", "", "## Segments", ""]
    lines += [
        "| segment | arm | users | impressions | clicks | CTR | lift (95 % CI, p) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, segment in report["segments"].items():
        test = details.get("segments_tests", {}).get(key.removesuffix("_users")) or {}
        for arm in ARMS:
            a = segment["arms"][arm]
            lift = ""
            if arm == "treatment":
                lift = _pct(segment["lift"], True)
                if test.get("p_value") is not None:
                    lift += f" ({_ci_text(test.get('ci95'))}, p={test['p_value']:.2g})"
            lines.append(
                f"| {key} | {arm} | {a['users']:,} | {a['impressions']:,} | {a['clicks']:,} | {a['ctr']:.3%} | {lift} |"
            )
    lines += [
        "",
        f"Cold users: at most {setup['cold_max_events']} events before the run (the service's cold and light "
        "stages), incl. brand-new users arriving during the run; warm users: more.",
        "",
        "## New products",
        "",
    ]
    np_details = details["new_products"]
    lines += [
        f"{np_details['products_released']} products released during the run, announced to the service at "
        f"release (`POST /admin/products`); {np_details['products_shown_first_day']} were shown on their first day.",
        f"First-day impressions: {np_details['first_day_impressions']:,} = "
        f"**{report['new_products']['impression_share_first_day']:.2%}** of the "
        f"{np_details['impressions_while_fresh']:,} impressions shown while some new product was in its first "
        f"day; their CTR {report['new_products']['ctr']:.3%}.",
    ]
    comparison = details.get("exploration_comparison")
    if comparison:
        w, wo = comparison["with_exploration"], comparison["without_exploration"]
        lines += [
            "",
            "| | with exploration | without | change |",
            "|---|---:|---:|---:|",
            f"| total CTR | {w['total_ctr']:.3%} | {wo['total_ctr']:.3%} | "
            f"{_pct(comparison['total_ctr_change'], True)} (95 % CI "
            f"{_ci_text(comparison.get('total_ctr_change_ci95'))}) |",
            f"| control CTR | {w['control_ctr']:.3%} | {wo['control_ctr']:.3%} | "
            f"{_pct(comparison['control_ctr_change'], True)} |",
            f"| treatment CTR | {w['treatment_ctr']:.3%} | {wo['treatment_ctr']:.3%} | "
            f"{_pct(comparison['treatment_ctr_change'], True)} |",
            f"| new products' first-day share | {w['new_products_impression_share_first_day']:.2%} | "
            f"{wo['new_products_impression_share_first_day']:.2%} | |",
        ]
        served = comparison.get("served_by_policies")
        if served and served.get("with_exploration_ctr") is not None:
            fallback = served["fallback_impressions"]
            lines.append(
                f"| total CTR on pages the policies served (without the degraded fallback's "
                f"{fallback['with_exploration']:,} / {fallback['without_exploration']:,} impressions) | "
                f"{served['with_exploration_ctr']:.3%} | {served['without_exploration_ctr']:.3%} | "
                f"{_pct(served.get('total_ctr_change'), True)} (95 % CI "
                f"{_ci_text(served.get('total_ctr_change_ci95'))}) |"
            )
        lines += [
            "",
            "Both runs have the same seed, users, sessions and click draws; the CIs treat them as independent "
            "samples, so they are conservative.",
        ]
    check = details["cross_check"]
    lines += [
        "",
        "## Cross-checks",
        "",
        f"All counts agree: **{'yes' if check['all_match'] else 'NO'}**.",
        "",
        "| arm | service log (impr / clicks / carts / purchases) | simulator | match |",
        "|---|---|---|---|",
    ]
    for arm, entry in check["arms"].items():
        s, m = entry["service_log"], entry["simulator"]
        lines.append(
            f"| {arm} | {s['impressions']:,} / {s['clicks']:,} / {s['carts']:,} / {s['purchases']:,} | "
            f"{m['impressions']:,} / {m['clicks']:,} / {m['carts']:,} / {m['purchases']:,} | {entry['match']} |"
        )
    lines += ["", "| variant | service log (impr / clicks) | /metrics counters | match |", "|---|---|---|---|"]
    for variant, entry in check["variants"].items():
        s, m = entry["service_log"], entry["metrics"]
        lines.append(
            f"| {variant} | {s['impression']:,} / {s['click']:,} | {m['impression']:,} / {m['click']:,} | "
            f"{entry['match']} |"
        )
    sim = details["simulator"]
    lines += [
        "",
        "## Setup",
        "",
        f"- command: `{setup['command']}`",
        f"- service: {setup['service']}; champion {setup.get('champion_version')}, challenger "
        f"{setup.get('challenger_version')}",
        f"- {sim['pages']:,} pages of k={setup['k']} served in {sim['wall_seconds']:.0f} s; degraded (fallback) "
        f"pages {sim['degraded_pages']:,} (service's fallback causes: {sim.get('fallback_causes') or 'none'}); "
        f"routing mismatches {sim['routing_mismatches']}; "
        f"{sim['announced_products']} products announced",
    ]
    if "exploration_max_views" in setup:
        lines.append(
            f"- exploration: {'on' if setup['exploration'] else 'off'}; pool = products with at most "
            f"{setup['exploration_max_views']} views in the features"
        )
    if "wall_seconds_before_analysis" in setup:
        lines.append(f"- wall time from start to the analysis: {setup['wall_seconds_before_analysis']:.0f} s")
    lines += [f"- note: {note}" for note in details.get("notes", [])]
    lines += ["", "Shown items by the path that chose them (`reason`), simulator's counts:", ""]
    lines += ["| segment | arm | reason | impressions | CTR |", "|---|---|---|---:|---:|"]
    for segment, by_arm in sim["reasons"].items():
        for arm, reasons in by_arm.items():
            for reason, entry in reasons.items():
                lines.append(f"| {segment} | {arm} | {reason} | {entry['impressions']:,} | {entry['ctr']:.3%} |")
    lines += [
        "",
        "Shoppers are the data generator's ground truth: they click with "
        "`sigmoid(a + b * affinity) / log2(position + 2)`, cart and buy from the same utility; the service "
        "only sees their events. See zadanie4/evaluation/ab/simulation.py for the session model.",
        "",
    ]
    return "\n".join(lines)


def write_outputs(
    out: Path, report: Mapping[str, Any], details: Mapping[str, Any], series: pd.DataFrame, bucket_hours: float
) -> dict[str, Path]:
    """Write report.json, details.json, ctr_over_time.png and report.md into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "report": write_json(out / REPORT_FILE, report),
        # report.json has the fixed keys: the run's commit and time go into details.json
        "details": write_json(out / DETAILS_FILE, {**details, "run": run_stamp()}),
        "plot": plot_ctr_over_time(series, out / PLOT_FILE, bucket_hours=bucket_hours),
    }
    markdown = out / MARKDOWN_FILE
    markdown.write_text(render_markdown(report, details), encoding="utf-8")
    paths["markdown"] = markdown
    return paths
