"""The progress callback every stage takes: `progress(event, message=..., **info)`; None means silent."""

from __future__ import annotations

from typing import Any, Callable

Progress = Callable[..., None]


def emit(progress: Progress | None, event: str, **info: Any) -> None:
    if progress is not None:
        progress(event, **info)
