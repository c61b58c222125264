"""Renders the progress protocol (`ensemble.progress`): bars for `done`/`total` events, lines for the rest."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

QUIET_STAGES = {"fold_skipped"}


def _describe(event: dict) -> str:
    stage = event.get("stage", "event")
    rest = []
    for key, value in event.items():
        if key == "stage" or value is None:
            continue
        if isinstance(value, float):
            value = f"{value:.4f}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
        rest.append(f"{key} {value}")
    return f"{stage.replace('_', ' ')}: " + ", ".join(rest)


def first_saying(line: str, show: Callable[[dict], None], say: Callable[[str], None]) -> Callable[[dict], None]:
    """`show`, printing `line` (e.g. the task ens decided) before the first event: once work has started,
    so an error raised before it stays the command's one line."""
    pending = [line]

    def handler(event: dict) -> None:
        if pending:
            say(pending.pop())
        show(event)

    return handler


@contextmanager
def event_printer(console) -> Iterator[Callable[[dict], None]]:
    """Yield an event handler that draws rich progress bars (transient) and prints milestone lines."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    bars = Progress(*columns, console=console, transient=True)
    tasks: dict[str, int] = {}
    started = False

    def show(event: dict) -> None:
        nonlocal started
        if "done" in event and "total" in event:
            if not console.is_terminal:  # a log file gets the milestone lines, not bar redraws
                return
            if not started:  # the live display starts with the first bar, so early errors print cleanly
                bars.start()
                started = True
            label = event.get("stage", "")
            if "fold" in event:
                label = f"fold {event['fold']} {label}"
            if "run" in event:  # folds of several runs at once (Ray)
                label = f"{event['run']} {label}"
            label = label.replace("_progress", "").replace("_", " ")
            if label not in tasks:
                tasks[label] = bars.add_task(label, total=event["total"])
            bars.update(tasks[label], completed=event["done"], total=event["total"])
            if event["done"] >= event["total"]:
                bars.remove_task(tasks.pop(label))
        elif event.get("stage") not in QUIET_STAGES:
            from ensemble.cli.present import hang  # a wrapped line indents, so it reads as one

            bars.console.print(hang(_describe(event), console.width), highlight=False, markup=False)

    try:
        yield show
    finally:
        if started:
            bars.stop()
