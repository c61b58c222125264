"""The one progress protocol: library code calls `progress(event)` with a plain dict; the CLI renders it.

- `{"stage": S, "done": d, "total": t, …}` advances a bar named after the stage (and `fold`, when given);
- any other event with a `stage` is a milestone, printed as one line (`cli.progress`).

A function that reports progress takes `progress: Progress | None` and emits events with its own stage
name; a caller that needs more context wraps the callback with `tagged` (e.g. the fold, or its own stage).
"""

from __future__ import annotations

from typing import Callable

Progress = Callable[[dict], None]
POLL_SECONDS = 0.2  # how often a parent waiting on its workers (processes, Ray tasks) relays their events


def emit(progress: Progress | None, stage: str, **fields) -> None:
    """Send one event, if anybody listens."""
    if progress is not None:
        progress({"stage": stage, **fields})


def tagged(progress: Progress | None, **fields) -> Progress | None:
    """`progress` with `fields` added to (and overriding) every event; None stays None."""
    if progress is None:
        return None
    return lambda event: progress({**event, **fields})
