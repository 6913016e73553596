"""The latent-factor shop: a valid event log, 2-20 views per user, reproducible, and a signal that
collaborative models find (its ground truth is user x product affinity, not the ranker's features)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from shared import column_names as col
from shared.cli import main
from shared.event_loader import load_events, validate_events
from shared.latent_shop import LatentShopConfig, generate_latent_shop

CONFIG = LatentShopConfig(n_users=2000, n_products=600, seed=5)


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return generate_latent_shop(CONFIG)


def test_the_log_is_valid_as_it_is_and_reproducible(events: pd.DataFrame) -> None:
    result = validate_events(events)
    assert len(result.events) == len(events) and not result.summary.dropped
    assert list(events.columns) == list(col.ALL_COLUMNS)
    assert events[col.EVENT_TIME].is_monotonic_increasing
    pd.testing.assert_frame_equal(events, generate_latent_shop(CONFIG))
    assert not generate_latent_shop(LatentShopConfig(n_users=2000, n_products=600, seed=6)).equals(events)


def test_every_user_views_between_2_and_20_times_and_the_funnel_narrows(events: pd.DataFrame) -> None:
    views = events[events[col.EVENT_TYPE] == col.VIEW].groupby(col.USER_ID).size()
    assert len(views) == CONFIG.n_users and views.between(2, 20).all()
    assert views.median() < views.mean()  # a long tail of active users
    counts = events[col.EVENT_TYPE].value_counts()
    assert counts[col.VIEW] > counts[col.CART] > counts[col.PURCHASE] > 0
    assert events[col.CATEGORY_ID].nunique() == CONFIG.n_categories


def test_collaborative_baselines_find_the_signal_popularity_misses(events: pd.DataFrame) -> None:
    from zadanie1.peer_baselines import BaselineSettings, tune_and_fit
    from zadanie1.ranking_dataset import relevant_sets, window_relevance
    from zadanie1.ranking_metrics import mean_ranking_metrics

    valid = validate_events(events).events
    cutoff = pd.Timestamp("2026-10-24", tz="UTC")
    fast = BaselineSettings(ease_regularization=(100.0,), threads=1)
    tuned = tune_and_fit(
        ("popularity_tuned", "ease"),
        valid,
        cutoff,
        lambda a, b: relevant_sets(window_relevance(valid, a, b)),
        fast,
    )
    truth = relevant_sets(window_relevance(valid, cutoff, cutoff + pd.Timedelta(days=5)))
    known = set(tuned["ease"].baseline.data.user_ids.tolist())
    users = [u for u in sorted(truth) if u in known]

    def precision(name: str) -> float:
        return mean_ranking_metrics(tuned[name].baseline.recommend(users, 10), [truth[u] for u in users], 10).precision

    assert precision("ease") > 1.1 * precision("popularity_tuned")


def test_the_cli_writes_a_marked_file_and_refuses_a_foreign_one(tmp_path: Path) -> None:
    out = tmp_path / "latent.parquet"
    with pytest.raises(SystemExit) as done:
        main(["data", "generate", "--mode", "latent", "--users", "100", "--products", "40", "--out", str(out)])
    assert done.value.code == 0 and len(load_events(out).events) > 200
    foreign = tmp_path / "mine.parquet"
    foreign.write_bytes(b"my own data")
    with pytest.raises(SystemExit) as refused:
        main(["data", "generate", "--mode", "latent", "--out", str(foreign)])
    assert refused.value.code == 2 and foreign.read_bytes() == b"my own data"
