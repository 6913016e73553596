"""py-spy collapsed-stack parsing and the per-request cost arithmetic of profile.txt."""

from __future__ import annotations

import pytest

from zadanie4.evaluation.bench.hot_path_profile import (
    NO_PYTHON_FRAMES,
    Recording,
    Stage,
    aggregate,
    function_of,
    ms_per_request,
    parse_collapsed,
    report,
    stage_samples,
)

RAW = """\
main (app.py:1);handle (app.py:10);score (model.py:5) 30
main (app.py:1);handle (app.py:12);read (store.py:7) 10
main (app.py:1);handle (app.py:10);score (model.py:6) 20
worker (pool.py:3);_worker (concurrent/futures/thread.py:81) 40
 5
"""


def test_frames_fold_line_numbers_into_one_function() -> None:
    assert function_of("recommend (zadanie1/recommender.py:290)") == "recommend (zadanie1/recommender.py)"
    assert function_of("<module> (recsys)") == "<module> (recsys)"
    assert function_of("odd frame") == "odd frame"


def test_collapsed_lines_parse_into_frames_and_counts_including_native_only_samples() -> None:
    stacks = parse_collapsed(RAW.splitlines())
    assert len(stacks) == 5
    assert stacks[0] == (["main (app.py:1)", "handle (app.py:10)", "score (model.py:5)"], 30)
    assert stacks[-1] == ([NO_PYTHON_FRAMES], 5)


def test_a_line_without_a_count_is_refused() -> None:
    with pytest.raises(ValueError, match="collapsed-stack"):
        parse_collapsed(["main (app.py:1);handle (app.py:10)"])


def test_self_and_inclusive_samples_per_function() -> None:
    profile = aggregate(parse_collapsed(RAW.splitlines()))
    assert profile.total == 105
    assert profile.self_samples["score (model.py)"] == 50  # two lines of one function
    assert profile.inclusive_samples["handle (app.py)"] == 60
    assert profile.inclusive_samples["main (app.py)"] == 60  # counted once per sample, not per frame


def test_idle_waits_can_be_dropped() -> None:
    profile = aggregate(parse_collapsed(RAW.splitlines()), drop_idle=True)
    assert profile.total == 65
    assert "_worker (concurrent/futures/thread.py)" not in profile.self_samples


def test_samples_convert_to_milliseconds_per_request() -> None:
    # 200 samples at 100 Hz = 2 s of work spread over 1000 requests = 2 ms each
    assert ms_per_request(200, 100.0, 1000) == pytest.approx(2.0)
    assert ms_per_request(10, 100.0, 0) == 0.0


def test_stages_count_each_sample_once_and_everything_else_excludes_the_named_stages() -> None:
    stacks = parse_collapsed(RAW.splitlines())
    assert stage_samples(stacks, ("handle (app.py",)) == 60
    assert stage_samples(stacks, ("score (", "read (")) == 60
    assert stage_samples(stacks, (), exclude=("handle",)) == 45
    assert stage_samples(stacks, (), exclude=("handle",), drop_idle=True) == 5


def test_report_lists_stages_and_top_functions_with_ms_per_request() -> None:
    stacks = parse_collapsed(RAW.splitlines())
    # given 65 non-idle samples scaled so the recording is worth 6.5 ms per request
    recording = Recording("cpu", stacks, drop_idle=True, ms_per_sample=0.1, scale_note="measured")
    text = report([recording], header="header line", stages=[Stage("model", ("score",))], top=3)
    assert text.startswith("header line")
    assert "== cpu: 65 samples, 6.500 ms per request (measured)" in text
    assert "  76.9%   5.000  model" in text
    assert "  76.9%   5.000  score (model.py)" in text
