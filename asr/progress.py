"""Progress bars that also read well in a log file.

On a terminal, `progress_bar` is plain tqdm. When stderr is not a terminal (a recipe's output
sent to a file, CI), tqdm's carriage-return redraws would pile up into one enormous line, so the
bar becomes a status line written every LOG_INTERVAL_S seconds and once at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm

LOG_INTERVAL_S = 30.0  # seconds between status lines in a log file


class LogLines(tqdm):
    """tqdm that prints a whole line at most once per `mininterval`, and once at the end."""

    _last_line_t: float | None = None

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "":  # tqdm clearing its line: nothing to clear in a log
            return False
        now = time.monotonic()
        if self._last_line_t is not None and now - self._last_line_t < self.mininterval:
            return False  # set_postfix and friends redraw on every call
        self._last_line_t = now
        self.fp.write((self.__str__() if msg is None else msg) + "\n")
        self.fp.flush()
        return True

    def close(self) -> None:
        if not self.disable:
            self._last_line_t = None
            self.display()  # the final count
        self.leave = False  # tqdm's own farewell would redraw and add an empty line
        super().close()


def progress_bar(iterable: Any = None, **kwargs: Any) -> tqdm:
    """tqdm(iterable, **kwargs) on a terminal; periodic log lines otherwise."""
    stream = kwargs.get("file") or sys.stderr
    if hasattr(stream, "isatty") and stream.isatty():
        return tqdm(iterable, **kwargs)
    kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    kwargs.setdefault("ascii", True)
    return LogLines(iterable, **kwargs)
