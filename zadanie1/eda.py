"""Exploratory data analysis of an event log: PNG plots plus ``report.md`` with the numbers and images.

Works on any validated events frame, including files without price, brand, category or session
columns (plots that need a missing column are skipped and the report says so). Pure statistics
(:func:`eda_numbers`) are separate from drawing (:func:`run_eda`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared import column_names as col
from zadanie1.candidate_generation import session_codes

SESSION_GAP_MINUTES = 30.0


@dataclass
class EdaResult:
    numbers: dict[str, Any]
    plots: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    report_path: Path | None = None


def _sessions(events: pd.DataFrame) -> pd.Series:
    return pd.Series(session_codes(events, SESSION_GAP_MINUTES), index=events.index)


def eda_numbers(events: pd.DataFrame) -> dict[str, Any]:
    """Headline statistics (counts, funnel, long tail, activity, cold start) as plain numbers."""
    n = len(events)
    counts = events[col.EVENT_TYPE].value_counts().reindex(list(col.EVENT_TYPES), fill_value=0)
    per_product = events.groupby(col.PRODUCT_ID).size().sort_values(ascending=False)
    per_user = events.groupby(col.USER_ID).size()
    sessions = _sessions(events)
    per_session = sessions.value_counts()
    views, carts, purchases = (int(counts[t]) for t in (col.VIEW, col.CART, col.PURCHASE))
    top_share = {
        f"top_{pct}pct_products_event_share": float(per_product.iloc[: max(1, len(per_product) * pct // 100)].sum() / n)
        for pct in (1, 10, 20)
    }
    days = events[col.EVENT_TIME].dt.floor("D")
    first_user_day = events.groupby(col.USER_ID)[col.EVENT_TIME].transform("min").dt.floor("D")
    first_product_day = events.groupby(col.PRODUCT_ID)[col.EVENT_TIME].transform("min").dt.floor("D")
    first_day = days.min()
    later = days > first_day
    buyers = events.loc[events[col.EVENT_TYPE] == col.PURCHASE, col.USER_ID].nunique()
    return {
        "events": n,
        "users": int(per_user.size),
        "products": int(per_product.size),
        "categories": int(events[col.CATEGORY_ID].nunique()),
        "brands": int(events[col.BRAND].nunique()),
        "sessions": int(per_session.size),
        "sessions_from_column": bool(events[col.USER_SESSION].notna().any()),
        "period_start": str(events[col.EVENT_TIME].min()),
        "period_end": str(events[col.EVENT_TIME].max()),
        "days": int(days.nunique()),
        **{f"n_{t}": int(counts[t]) for t in col.EVENT_TYPES},
        "cart_per_view": carts / views if views else float("nan"),
        "purchase_per_cart": purchases / carts if carts else float("nan"),
        "purchase_per_view": purchases / views if views else float("nan"),
        "buying_user_share": buyers / per_user.size if per_user.size else float("nan"),
        **top_share,
        "products_with_one_event_share": float((per_product == 1).mean()),
        "events_per_user_median": float(per_user.median()),
        "events_per_user_p90": float(per_user.quantile(0.9)),
        "users_with_one_event_share": float((per_user == 1).mean()),
        "events_per_session_median": float(per_session.median()),
        "events_per_session_p90": float(per_session.quantile(0.9)),
        "missing_share": {c: float(events[c].isna().mean()) for c in col.OPTIONAL_COLUMNS},
        "after_day1_events_by_new_users_share": float((first_user_day[later] == days[later]).mean())
        if later.any()
        else float("nan"),
        "after_day1_events_on_new_products_share": float((first_product_day[later] == days[later]).mean())
        if later.any()
        else float("nan"),
        "peak_hour_utc": int(events[col.EVENT_TIME].dt.hour.value_counts().idxmax()) if n else -1,
    }


def run_eda(events: pd.DataFrame, out: Path) -> EdaResult:
    """Write every plot that the columns allow, and ``report.md``, into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    result = EdaResult(numbers=eda_numbers(events))
    plotters = (
        ("hourly_activity.png", _hourly),
        ("daily_activity.png", _daily),
        ("event_funnel.png", _funnel),
        ("product_popularity_long_tail.png", _long_tail),
        ("category_shares.png", _categories),
        ("price_by_category.png", _prices),
        ("user_activity.png", _user_activity),
        ("session_length.png", _session_length),
        ("new_users_and_products.png", _cold_start),
    )
    for name, draw in plotters:
        fig, ax = plt.subplots(figsize=(9, 5))
        try:
            reason = draw(events, ax)
            if reason:
                result.skipped.append(f"{name}: {reason}")
                continue
            fig.tight_layout()
            fig.savefig(out / name, dpi=90)
            result.plots.append(out / name)
        finally:
            plt.close(fig)
    result.report_path = out / "report.md"
    result.report_path.write_text(render_report(result))
    return result


def _hourly(events: pd.DataFrame, ax: Any) -> str | None:
    table = events.groupby([events[col.EVENT_TIME].dt.hour, col.EVENT_TYPE], observed=True).size().unstack(fill_value=0)
    table = table.reindex(range(24), fill_value=0)
    table.plot(kind="bar", stacked=True, ax=ax, width=0.85)
    ax.set(title="Events by hour of day (UTC)", xlabel="hour (UTC)", ylabel="events")
    return None


def _daily(events: pd.DataFrame, ax: Any) -> str | None:
    table = (
        events.groupby([events[col.EVENT_TIME].dt.floor("D"), col.EVENT_TYPE], observed=True)
        .size()
        .unstack(fill_value=0)
    )
    table.index = table.index.strftime("%m-%d")
    table.plot(ax=ax, marker="o", logy=True)
    ax.set(title="Events per day by type (log scale)", xlabel="day", ylabel="events")
    return None


def _funnel(events: pd.DataFrame, ax: Any) -> str | None:
    counts = events[col.EVENT_TYPE].value_counts().reindex([col.VIEW, col.CART, col.PURCHASE], fill_value=0)
    values = counts.to_numpy()
    bars = ax.bar(counts.index.astype(str), values, color=["#4c72b0", "#dd8452", "#55a868"])
    views, carts, purchases = (int(v) for v in values)

    def rate(part: int, whole: int) -> str:
        return f"{part / whole:.1%}" if whole else "n/a"

    labels = [
        f"{views:,}",
        f"{carts:,}\n{rate(carts, views)} of views",
        f"{purchases:,}\n{rate(purchases, carts)} of carts\n{rate(purchases, views)} of views",
    ]
    for bar, value, label in zip(bars, values, labels, strict=True):
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, max(value, 1)), ha="center", va="bottom")
    ax.set_yscale("log")
    ax.set_ylim(top=max(values.max(), 1) * 4)  # room for the labels above the tallest bar
    ax.set(title="Funnel: view -> cart -> purchase (counts and step conversion)", ylabel="events (log)")
    return None


def _long_tail(events: pd.DataFrame, ax: Any) -> str | None:
    per_product = np.sort(events.groupby(col.PRODUCT_ID).size().to_numpy())[::-1]
    ax.loglog(np.arange(1, len(per_product) + 1), per_product)
    ax.set(title="Product popularity long tail", xlabel="product rank (log)", ylabel="events (log)")
    return None


def _category_labels(events: pd.DataFrame) -> pd.Series:
    codes = events[col.CATEGORY_CODE]
    ids = events[col.CATEGORY_ID].astype("string")
    return codes.fillna(ids).fillna("(unknown)")


def _categories(events: pd.DataFrame, ax: Any) -> str | None:
    if events[col.CATEGORY_ID].isna().all() and events[col.CATEGORY_CODE].isna().all():
        return "no category columns"
    shares = _category_labels(events).value_counts(normalize=True).head(15)[::-1]
    ax.barh(shares.index.astype(str), shares.to_numpy())
    ax.set(title="Share of events by category (top 15)", xlabel="share of events")
    return None


def _prices(events: pd.DataFrame, ax: Any) -> str | None:
    priced = events[events[col.PRICE] > 0]
    if priced.empty:
        return "no prices"
    labels = _category_labels(priced)
    top = labels.value_counts().head(8).index
    data = [priced.loc[labels == c, col.PRICE].to_numpy() for c in top]
    ax.boxplot(data, vert=False, showfliers=False)
    ax.set_yticks(range(1, len(top) + 1), [str(c) for c in top])
    ax.set_xscale("log")
    ax.set(title="Price distribution by top categories (events, log scale)", xlabel="price")
    return None


def _user_activity(events: pd.DataFrame, ax: Any) -> str | None:
    per_user = events.groupby(col.USER_ID).size()
    bins = np.unique(np.logspace(0, np.log10(per_user.max() + 1), 40).astype(int))
    ax.hist(per_user, bins=bins)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(title="Events per user", xlabel="events (log)", ylabel="users (log)")
    return None


def _session_length(events: pd.DataFrame, ax: Any) -> str | None:
    per_session = _sessions(events).value_counts()
    upper = int(per_session.quantile(0.99)) + 1
    ax.hist(per_session.clip(upper=upper), bins=range(1, upper + 2))
    source = "user_session" if events[col.USER_SESSION].notna().any() else f"{SESSION_GAP_MINUTES:.0f}-minute gaps"
    ax.set(title=f"Events per session (sessions from {source}; clipped at p99)", xlabel="events", ylabel="sessions")
    return None


def _cold_start(events: pd.DataFrame, ax: Any) -> str | None:
    day = events[col.EVENT_TIME].dt.floor("D")
    new_user = events.groupby(col.USER_ID)[col.EVENT_TIME].transform("min").dt.floor("D") == day
    new_product = events.groupby(col.PRODUCT_ID)[col.EVENT_TIME].transform("min").dt.floor("D") == day
    frame = pd.DataFrame(
        {
            "day": day,
            "events by users first seen that day": new_user,
            "events on products first seen that day": new_product,
        }
    )
    shares = frame.groupby("day").mean()
    if len(shares) < 2:
        return "fewer than two days"
    shares = shares.iloc[1:]  # on day 1 everything is "new"
    shares.index = shares.index.strftime("%m-%d")
    shares.plot(ax=ax, marker="o")
    ax.set(title="Cold start: share of a day's events from new users / on new products", xlabel="day", ylabel="share")
    return None


def render_report(result: EdaResult) -> str:
    """report.md: the numbers of :func:`eda_numbers` and the images."""
    n = result.numbers

    def pct(value: float) -> str:
        return "n/a" if value != value else f"{value:.1%}"

    sessions_from = "user_session column" if n["sessions_from_column"] else f"{SESSION_GAP_MINUTES:.0f}-minute gaps"
    missing = ", ".join(f"{c} {pct(v)}" for c, v in n["missing_share"].items())
    lines = [
        "# Exploratory data analysis",
        "",
        "## Size",
        f"- {n['events']:,} events, {n['users']:,} users, {n['products']:,} products, "
        f"{n['categories']:,} categories, {n['brands']:,} brands, {n['sessions']:,} sessions ({sessions_from})",
        f"- period {n['period_start']} .. {n['period_end']} ({n['days']} days); "
        f"busiest hour {n['peak_hour_utc']}:00 UTC",
        f"- missing values: {missing}",
        "",
        "## Funnel",
        f"- views {n['n_view']:,}, carts {n['n_cart']:,}, removes {n['n_remove_from_cart']:,}, "
        f"purchases {n['n_purchase']:,}",
        f"- cart / view {pct(n['cart_per_view'])}, purchase / cart {pct(n['purchase_per_cart'])}, "
        f"purchase / view {pct(n['purchase_per_view'])}",
        f"- users who bought anything: {pct(n['buying_user_share'])}",
        "",
        "## Popularity and activity",
        f"- top 1 % of products: {pct(n['top_1pct_products_event_share'])} of events; "
        f"top 10 %: {pct(n['top_10pct_products_event_share'])}; top 20 %: {pct(n['top_20pct_products_event_share'])}",
        f"- products with a single event: {pct(n['products_with_one_event_share'])}",
        f"- events per user: median {n['events_per_user_median']:.0f}, p90 {n['events_per_user_p90']:.0f}; "
        f"users with one event: {pct(n['users_with_one_event_share'])}",
        f"- events per session: median {n['events_per_session_median']:.0f}, p90 {n['events_per_session_p90']:.0f}",
        "",
        "## Cold start",
        f"- after the first day, {pct(n['after_day1_events_by_new_users_share'])} of events come from users "
        f"first seen that day and {pct(n['after_day1_events_on_new_products_share'])} are on products first "
        "seen that day.",
        "",
        "## Plots",
        *[f"![{p.stem}]({p.name})\n" for p in result.plots],
        "## Skipped plots",
        *([f"- skipped {s}" for s in result.skipped] or ["- none"]),
    ]
    return "\n".join(lines) + "\n"
