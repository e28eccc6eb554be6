"""A rich progress bar behind the `Progress` callback that `fit()` methods take."""

from __future__ import annotations

import contextlib
from typing import Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gensdk.family import Progress as ProgressCallback


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[ProgressCallback]:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[note]}"))
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=None, note="")

        def update(done: int, total: int, message: str) -> None:
            bar.update(task, completed=done, total=total, note=message)

        yield update
