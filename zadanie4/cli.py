"""``recsys serve``: the service, one uvicorn worker (``recsys serve-demo`` lives with the measuring tools).

Imports stay light: uvicorn, FastAPI and the parts are imported inside the command bodies.
"""

from __future__ import annotations

import typer


def serve_command(
    host: str | None = typer.Option(None, help="Interface to bind; default RECSYS_SERVE_HOST or 127.0.0.1."),
    port: int | None = typer.Option(None, min=0, max=65535, help="TCP port; default RECSYS_SERVE_PORT or 8000."),
    log_level: str = typer.Option("info", help="uvicorn/app log level: debug, info, warning, error."),
) -> None:
    """Run the recommendation service (FastAPI + uvicorn, 1 worker) until Ctrl+C."""
    import logging
    import sys

    import uvicorn

    from shared.console import console
    from zadanie4.app import create_app
    from zadanie4.dependencies import build_dependencies
    from zadanie4.settings import load_settings

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = load_settings(**overrides)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings, dependencies_factory=build_dependencies, freeze_gc=True)
    # Background threads (store reads, shadow, real-time updates) hand the GIL back to the event loop
    # after 1 ms instead of 5 ms, which bounds the latency they can add to a request.
    sys.setswitchinterval(0.001)
    base = f"http://{settings.host}:{settings.port}"
    console.print(f"serving on {base}  (API docs {base}/docs, metrics {base}/metrics, ready {base}/health/ready)")
    if settings.admin_token is None:
        console.print("admin endpoints are closed: set RECSYS_SERVE_ADMIN_TOKEN to use /admin/*")
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        log_level=log_level.lower(),
        access_log=False,
        timeout_keep_alive=30,
        backlog=2048,
    )


def register(app: typer.Typer) -> None:
    """Mount ``serve`` on the root ``recsys`` app."""
    app.command("serve")(serve_command)
