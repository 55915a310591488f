"""The progress bar ``logs.Progress`` draws on a terminal, with rich: what is done, of how
much, the rate and the time left.

Its own module so that only a command on a terminal imports rich's progress machinery; the
collector daemon and everything run under systemd never do. No project imports.
"""

from __future__ import annotations

import atexit

import rich.console
import rich.progress
import rich.text


class ItemRate(rich.progress.ProgressColumn):
    """Items per second (rich's own speed column counts bytes)."""

    def render(self, task: rich.progress.Task) -> rich.text.Text:
        """The rate of ``task`` as "1,234/s" ("?/s" before there is one)."""
        speed = task.finished_speed or task.speed
        shown = "?" if speed is None else f"{speed:,.0f}" if speed >= 10 else f"{speed:.1f}"
        return rich.text.Text(f"{shown}/s", style="progress.data.speed")


class Bar:
    """One progress bar on standard error; ``unit`` ``"bytes"`` shows sizes and bytes/s."""

    def __init__(self, label: str, total: int, unit: str = "") -> None:
        in_bytes = unit == "bytes"
        done: rich.progress.ProgressColumn = (
            rich.progress.DownloadColumn() if in_bytes else rich.progress.MofNCompleteColumn()
        )
        rate: rich.progress.ProgressColumn = (
            rich.progress.TransferSpeedColumn() if in_bytes else ItemRate()
        )
        self._progress = rich.progress.Progress(
            rich.progress.TextColumn("{task.description}"),
            rich.progress.BarColumn(),
            done,
            rate,
            rich.progress.TextColumn("ETA"),
            rich.progress.TimeRemainingColumn(),
            console=rich.console.Console(stderr=True),
            # Standard output may be a file or a pipe (build's summary): it stays where it goes.
            redirect_stdout=False,
        )
        self._task = self._progress.add_task(label, total=total)
        self._progress.start()
        # Work that ends in an exception must not leave the terminal without its cursor.
        atexit.register(self.stop)

    def update(self, done: int) -> None:
        """Show ``done`` of the total."""
        self._progress.update(self._task, completed=done)

    def stop(self) -> None:
        """Draw the bar a last time and give the terminal back."""
        atexit.unregister(self.stop)
        self._progress.stop()
