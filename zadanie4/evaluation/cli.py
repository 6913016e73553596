"""``recsys serve-demo`` and ``recsys simulate-ab``: the measuring tools' commands, mounted by the root CLI.

Present only where the measuring tools are installed (a clone of the repository, not the service image).
"""

from __future__ import annotations

import typer

from zadanie4.evaluation.ab.cli import simulate_ab_command


def serve_demo_command(
    timeout_s: float = typer.Option(120.0, min=5, help="Seconds to wait for the service to become ready."),
) -> None:
    """Start the service on a free 127.0.0.1 port, print a warm and a cold user's recommendations, stop it."""
    from zadanie4.evaluation.serve_demo import run_demo

    run_demo(ready_timeout_s=timeout_s)


def register(app: typer.Typer) -> None:
    """Mount ``serve-demo`` and ``simulate-ab`` on the root ``recsys`` app."""
    app.command("serve-demo")(serve_demo_command)
    app.command("simulate-ab")(simulate_ab_command)
