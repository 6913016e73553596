"""The last step of ``make demo`` (``recsys serve-demo``): the service started for real, queried, stopped.

Starts ``recsys serve`` as a subprocess on a free 127.0.0.1 port, waits for ``/health/ready``,
prints a warm user's and a cold user's recommendations (and a cold user on a category page) with
the reason of every item, then stops the service and tells how to keep it running.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from shared.errors import UserInputError
from zadanie4.evaluation.service_process import HOST, free_port, start_service, stop_service, wait_ready


def demo_users(events_path: Path) -> tuple[int, int]:
    """A warm user (most events) and a cold one (an id never seen) from the events file."""
    import pandas as pd

    if not events_path.is_file():
        raise UserInputError(f"{events_path}: no events (run `recsys data generate` first)")
    users = pd.read_parquet(events_path, columns=["user_id"])["user_id"] if events_path.suffix == ".parquet" else None
    if users is None:
        from shared.event_loader import load_events

        users = load_events(events_path).events["user_id"]
    counts = users.value_counts()
    return int(counts.idxmax()), int(users.max()) + 1


def _print_list(console: Any, title: str, body: dict[str, Any], elapsed_ms: float) -> None:
    from rich.table import Table

    console.print(f"\n[bold]{title}[/]")
    table = Table(show_lines=False)
    for column in ("#", "product_id", "score", "reason"):
        table.add_column(column, justify="right" if column != "reason" else "left")
    for i, item in enumerate(body["items"], 1):
        table.add_row(str(i), str(item["product_id"]), f"{item['score']:.4f}", item["reason"])
    console.print(table)
    console.print(
        f"  variant {body['variant']}, model {body['model_version']}, degraded {body['degraded']}, "
        f"{elapsed_ms:.1f} ms over HTTP"
    )


def run_demo(ready_timeout_s: float = 120.0, k: int = 8) -> None:
    """Start, query, print and stop (see the module docstring)."""
    import httpx

    from shared.console import console
    from shared.settings import load_shared_settings

    shared = load_shared_settings()
    warm_user, cold_user = demo_users(shared.default_events_path)
    port = free_port()
    base = f"http://{HOST}:{port}"
    log_path = shared.artifacts_dir / "serve" / "demo_service.log"
    console.print(f"[bold cyan]>[/] starting the service on {base} (log: {log_path}) ...")
    started = time.perf_counter()
    process = start_service(port, log_path)
    try:
        try:
            wait_ready(base, process, ready_timeout_s)
        except RuntimeError as exc:
            tail = log_path.read_text(errors="replace").splitlines()[-15:] if log_path.exists() else []
            raise UserInputError(f"{exc}; service log tail:\n" + "\n".join(tail)) from exc
        console.print(f"  [green]ready[/] in {time.perf_counter() - started:.1f} s")
        with httpx.Client(base_url=base, timeout=10.0) as client:
            model = client.get("/model").json()
            console.print(
                f"champion {model['champion']['version']} ({model['champion']['source']}), "
                f"{model['products_cached']:,} products cached"
            )
            requests = [
                (
                    f"warm user {warm_user} (GET /recommend?user_id={warm_user}&k={k})",
                    "GET",
                    {"user_id": warm_user, "k": k},
                ),
                (f"cold user {cold_user} (never seen)", "GET", {"user_id": cold_user, "k": k}),
            ]
            for title, _method, params in requests:
                t0 = time.perf_counter()
                body = client.get("/recommend", params=params).json()
                _print_list(console, title, body, (time.perf_counter() - t0) * 1000)
            warm_body = client.get("/recommend", params={"user_id": warm_user, "k": 1}).json()
            category = None
            if warm_body["items"]:
                category = _category_of(shared.default_events_path, warm_body["items"][0]["product_id"])
            if category is not None:
                t0 = time.perf_counter()
                body = client.post("/recommend", json={"user_id": cold_user, "k": k, "category_id": category}).json()
                _print_list(
                    console,
                    f"cold user {cold_user} on category page {category} (POST)",
                    body,
                    (time.perf_counter() - t0) * 1000,
                )
    finally:
        stop_service(process)
    console.print("stopped the service.")
    console.print(
        "[bold]`make serve`[/] keeps it running on http://127.0.0.1:8000 — API docs at "
        "http://127.0.0.1:8000/docs, Prometheus metrics at http://127.0.0.1:8000/metrics"
    )


def _category_of(events_path: Path, product_id: int) -> int | None:
    import pandas as pd

    try:
        frame = pd.read_parquet(events_path, columns=["product_id", "category_id"])
    except Exception:
        return None
    rows = frame[frame["product_id"] == product_id]["category_id"].dropna()
    return int(rows.iloc[-1]) if len(rows) else None
