"""Summaries of py-spy's collapsed stacks (``--format raw``): where a request's time goes (pure).

py-spy writes one line per distinct stack: ``root;frame;...;leaf <count>`` with frames like
``recommend (zadanie1/recommender.py:290)``. From a recording taken while the service answered a
known number of requests at a known sampling rate, each function's share converts to milliseconds
per request: ``samples / rate_hz / requests * 1000``.

Two recordings are summarised: ``--gil`` (only the thread holding the GIL: the Python work that
serialises all requests) and all threads on CPU (adds native code that releases the GIL, such as
LightGBM's predict, and the store-read threads). Stacks whose leaf is a known idle wait (event loop
poll, thread-pool queue, condition waits) are dropped from the second.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Leaf frames that mean "waiting", not working (py-spy cannot always tell, e.g. uvloop's C poll).
IDLE_LEAVES = (
    "Runner.run (asyncio/runners.py",
    "_worker (concurrent/futures/thread.py:81)",
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "Queue.get (queue.py",
    "select (selectors.py",
    "Thread.join (threading.py",
)
NO_PYTHON_FRAMES = "(no Python frames)"
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True)
class Profile:
    """Aggregated samples: total, self (leaf) and inclusive (anywhere in the stack) counts per function."""

    total: int
    self_samples: Counter[str]
    inclusive_samples: Counter[str]


def function_of(frame: str) -> str:
    """``'recommend (zadanie1/recommender.py:290)'`` -> ``'recommend (zadanie1/recommender.py)'`` (line dropped)."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match['func']} ({match['file']})"


def parse_collapsed(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    """``(frames, count)`` per non-empty line of py-spy's raw output (root frame first, leaf last)."""
    stacks = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            raise ValueError(f"not a collapsed-stack line: {line[:120]!r}")
        # py-spy writes an empty stack for samples without Python frames (native-only threads).
        stacks.append((stack.split(";") if stack.strip() else [NO_PYTHON_FRAMES], int(count)))
    return stacks


def is_idle(frames: Sequence[str]) -> bool:
    return bool(frames) and frames[-1].startswith(IDLE_LEAVES)


def aggregate(stacks: Iterable[tuple[list[str], int]], *, drop_idle: bool = False) -> Profile:
    """Self and inclusive samples per function (line numbers folded), optionally without idle waits."""
    total = 0
    self_samples: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        if drop_idle and is_idle(frames):
            continue
        total += count
        functions = [function_of(f) for f in frames]
        self_samples[functions[-1]] += count
        for function in set(functions):
            inclusive[function] += count
    return Profile(total, self_samples, inclusive)


def ms_per_request(samples: int, rate_hz: float, requests: int) -> float:
    """Milliseconds of one request spent where ``samples`` were taken (sampling-rate arithmetic)."""
    if rate_hz <= 0 or requests <= 0:
        return 0.0
    return samples / rate_hz / requests * 1000.0


def format_table(
    title: str,
    counts: Counter[str],
    total: int,
    *,
    ms_per_sample: float,
    top: int = 25,
    prefix_filter: Sequence[str] = (),
) -> str:
    """Top functions by samples: share of the recording and ms per request (samples x ``ms_per_sample``)."""
    lines = [title, f"{'share':>7} {'ms/req':>7}  function"]
    shown = 0
    for function, n in counts.most_common():
        if prefix_filter and not any(p in function for p in prefix_filter):
            continue
        share = n / total if total else 0.0
        lines.append(f"{share:7.1%} {n * ms_per_sample:7.3f}  {function}")
        shown += 1
        if shown >= top:
            break
    return "\n".join(lines)


# Frames of the project's own code (what can be optimised here) vs the HTTP stack.
PROJECT_PACKAGES = ("zadanie1/", "zadanie2/", "zadanie4/", "shared/")


def stage_samples(
    stacks: Iterable[tuple[list[str], int]],
    patterns: Sequence[str],
    *,
    exclude: Sequence[str] = (),
    drop_idle: bool = False,
) -> int:
    """Samples whose stack has a frame containing any of ``patterns`` and none containing ``exclude``.

    An empty ``patterns`` matches every stack (use with ``exclude`` for "everything else").
    """
    total = 0
    for frames, count in stacks:
        if drop_idle and is_idle(frames):
            continue
        if exclude and any(x in frame for frame in frames for x in exclude):
            continue
        if not patterns or any(p in frame for frame in frames for p in patterns):
            total += count
    return total


@dataclass(frozen=True)
class Stage:
    """A named part of the request path, recognised by substrings of its frames (minus ``exclude``)."""

    label: str
    patterns: tuple[str, ...]
    exclude: tuple[str, ...] = ()


def stage_table(
    stacks: Sequence[tuple[list[str], int]],
    stages: Sequence[Stage],
    *,
    ms_per_sample: float,
    drop_idle: bool = False,
) -> str:
    """ms per request of each stage (a stage may contain others; labels say which)."""
    total = sum(c for f, c in stacks if not (drop_idle and is_idle(f)))
    lines = [f"{'share':>7} {'ms/req':>7}  stage", f"{1:7.1%} {total * ms_per_sample:7.3f}  all samples"]
    for stage in stages:
        n = stage_samples(stacks, stage.patterns, exclude=stage.exclude, drop_idle=drop_idle)
        share = n / total if total else 0.0
        lines.append(f"{share:7.1%} {n * ms_per_sample:7.3f}  {stage.label}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Recording:
    """One py-spy recording: its stacks, whether idle waits are dropped, and how samples become ms/request.

    ``ms_per_sample`` is either sampling arithmetic (``1000 / rate_hz / requests``) or, better when
    py-spy drops samples of a busy process, the measured CPU per request divided by the samples.
    """

    label: str
    stacks: Sequence[tuple[list[str], int]]
    drop_idle: bool
    ms_per_sample: float
    scale_note: str = ""


def report(recordings: Sequence[Recording], *, header: str, stages: Sequence[Stage] = (), top: int = 25) -> str:
    """The text of ``artifacts/bench/profile.txt``: per recording, the stages and the top functions."""
    parts = [header.rstrip(), ""]
    for rec in recordings:
        profile = aggregate(rec.stacks, drop_idle=rec.drop_idle)
        note = f" ({rec.scale_note})" if rec.scale_note else ""
        parts.append(
            f"== {rec.label}: {profile.total} samples, {profile.total * rec.ms_per_sample:.3f} ms per request{note}"
        )
        if stages:
            parts.append("-- stages of the request path (inclusive; indented stages are part of the one above)")
            parts.append(stage_table(rec.stacks, stages, ms_per_sample=rec.ms_per_sample, drop_idle=rec.drop_idle))
            parts.append("")
        parts.append(
            format_table(
                "-- self time (leaf function)",
                profile.self_samples,
                profile.total,
                ms_per_sample=rec.ms_per_sample,
                top=top,
            )
        )
        parts.append("")
        parts.append(
            format_table(
                "-- inclusive time, project code",
                profile.inclusive_samples,
                profile.total,
                ms_per_sample=rec.ms_per_sample,
                top=top,
                prefix_filter=PROJECT_PACKAGES,
            )
        )
        parts.append("")
    return "\n".join(parts)
