"""One line of ``check-config``: a level and a text (``config.check`` and its helpers make them,
the commands print them and choose the exit code from :attr:`Finding.problem`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# ok: works; note: cannot be checked from here, or a deliberate setting worth a reminder;
# warning: works, but not as well as it could; missing / error: will not work (exit 2).
Level = Literal["ok", "note", "warning", "missing", "error"]


@dataclass(frozen=True)
class Finding:
    """One line of check-config: ``missing`` and ``error`` are problems, the rest are not."""

    level: Level
    text: str

    @property
    def problem(self) -> bool:
        """Whether this finding makes check-config fail."""
        return self.level in ("error", "missing")

    def __str__(self) -> str:
        """The line check-config prints: the level in a column of eight, then the text."""
        return f"{self.level:8} {self.text}"
