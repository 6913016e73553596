"""The reliability report: one :class:`ScenarioResult` per scenario -> ``report.json`` + ``report.md``.

``report.json`` is ``{"scenarios": [{"name", "passed", "criterion", "requests", "non_2xx", "p99_ms",
"recovery_s", ...details}], ...}``; the markdown file is the same as a table (what the README shows).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.run_stamp import run_stamp

WINDOWS = ("before", "during", "after")
REPORT_JSON = "report.json"
REPORT_MD = "report.md"


@dataclass
class ScenarioResult:
    """The outcome of one scenario.

    ``non_2xx`` maps a status code (as text; ``"error"`` = no HTTP answer: refused, reset, timed out) to
    its count; ``p99_ms`` has the keys ``before``/``during``/``after`` (None when a window had no
    request); ``recovery_s`` is the seconds from the end of the fault until normal answers were back
    (None when the scenario has no recovery). ``details`` holds the scenario's own figures.
    """

    name: str
    passed: bool
    criterion: str
    requests: int
    non_2xx: dict[str, int] = field(default_factory=dict)
    p99_ms: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(WINDOWS))
    recovery_s: float | None = None
    details: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the fixed keys first, then ``details`` (also kept nested for the table)."""
        return {
            "name": self.name,
            "passed": bool(self.passed),
            "criterion": self.criterion,
            "requests": int(self.requests),
            "non_2xx": {str(k): int(v) for k, v in sorted(self.non_2xx.items())},
            "p99_ms": {w: _round(self.p99_ms.get(w)) for w in WINDOWS},
            "recovery_s": _round(self.recovery_s),
            "details": _jsonable(self.details),
        }


def failed_result(name: str, criterion: str, error: BaseException) -> ScenarioResult:
    """A scenario that could not run to the end (its own exception): reported as failed, with the reason."""
    return ScenarioResult(
        name=name,
        passed=False,
        criterion=criterion,
        requests=0,
        details={"error": f"{type(error).__name__}: {error}"},
    )


def _round(value: float | None, digits: int = 2) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(float(value), digits)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return _round(value, 4)
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return str(value)


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _non_2xx_text(counts: Mapping[str, int]) -> str:
    shown = {k: v for k, v in counts.items() if v}
    return ", ".join(f"{k}: {v}" for k, v in sorted(shown.items())) or "0"


def markdown_table(results: Sequence[ScenarioResult]) -> str:
    """The results as a markdown table: scenario, result, criterion, requests, non-2xx, p99s, recovery, figures."""
    lines = [
        "| scenario | result | criterion | requests | non-2xx | p99 ms before / during / after "
        "| recovery s | figures |",
        "|---|---|---|---:|---|---|---:|---|",
    ]
    for r in results:
        p99 = " / ".join(_fmt_ms(r.p99_ms.get(w)) for w in WINDOWS)
        figures = "; ".join(f"{k}={_short(v)}" for k, v in r.details.items() if not isinstance(v, (dict, list)))
        recovery = "-" if r.recovery_s is None else f"{r.recovery_s:.2f}"
        lines.append(
            f"| {r.name} | {'PASS' if r.passed else 'FAIL'} | {r.criterion} | {r.requests} | "
            f"{_non_2xx_text(r.non_2xx)} | {p99} | {recovery} | {figures} |"
        )
    return "\n".join(lines) + "\n"


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "/")


def write_report(results: Sequence[ScenarioResult], out_dir: Path, *, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``<out_dir>/report.json`` and ``<out_dir>/report.md``; returns the JSON path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": run_stamp(),
        "passed": all(r.passed for r in results),
        **_jsonable(dict(extra or {})),
        "scenarios": [r.as_dict() for r in results],
    }
    path = out_dir / REPORT_JSON
    path.write_text(json.dumps(payload, indent=2) + "\n")
    passed = sum(r.passed for r in results)
    md = [
        "# Reliability report",
        "",
        f"{passed}/{len(results)} scenarios passed ({payload['generated_at']}); command: `make reliability`.",
        "",
        markdown_table(results),
    ]
    (out_dir / REPORT_MD).write_text("\n".join(md))
    return path
