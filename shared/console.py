"""Terminal output for the CLI: one rich console, timed steps and progress bars."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")

console = Console(stderr=False, highlight=False)


@contextmanager
def step(title: str) -> Iterator[None]:
    """Print ``title``, run the block, then print how long it took."""
    console.print(f"[bold cyan]>[/] {title} ...")
    started = time.perf_counter()
    yield
    console.print(f"  [green]done[/] {title} in {time.perf_counter() - started:.1f} s")


_COLUMNS = (TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar over ``total`` units; the block gets ``advance(n)`` (hidden when not a terminal)."""
    with Progress(*_COLUMNS, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar (hidden when output is not a terminal)."""
    with Progress(*_COLUMNS, console=console, transient=True, disable=not console.is_terminal) as progress:
        yield from progress.track(items, description=description, total=total)
