"""Progress bars that also read well in a log file.

On a terminal, `progress_bar` is plain tqdm. When stderr is not a terminal (a recipe's output
sent to a file, CI), tqdm's carriage-return redraws would pile up into one enormous line, so the
bar becomes a status line written at most every LOG_INTERVAL_S seconds on its stream, whatever
the number of bars on it (training's one bar per epoch included), and, for a bar that `leave`s
(tqdm's default), once more at its end.
"""

from __future__ import annotations

import contextlib
import sys
import time
import weakref
from typing import Any

from tqdm import tqdm

LOG_INTERVAL_S = 30.0  # seconds between status lines in a log file

# When each stream last got a status line: one clock per stream, shared by all its bars.
_last_line_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


class LogLines(tqdm):
    """tqdm that writes a whole line at most once per `mininterval` on its stream, and a last
    line when it closes if `leave`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # (set before tqdm's __init__, which displays the opening line)
        self._stream = kwargs.get("file") or sys.stderr
        self._last_line = kwargs.get("leave", True)
        self._own_last: float | None = None
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None, force: bool = False) -> bool:
        if msg == "":  # tqdm clearing its line: nothing to clear in a log
            return False
        now = time.monotonic()
        try:
            last = _last_line_at.get(self._stream)
        except TypeError:  # a stream that takes no weak reference: this bar's own clock
            last = self._own_last
        if not force and last is not None and now - last < self.mininterval:
            return False  # set_postfix and friends redraw on every call
        self._own_last = now
        with contextlib.suppress(TypeError):
            _last_line_at[self._stream] = now
        self.fp.write((self.__str__() if msg is None else msg) + "\n")
        self.fp.flush()
        return True

    def close(self) -> None:
        if not self.disable and self._last_line:
            self.display(force=True)  # the final count
        self.leave = False  # tqdm's own farewell would redraw and add an empty line
        super().close()


def progress_bar(iterable: Any = None, **kwargs: Any) -> tqdm:
    """tqdm(iterable, **kwargs) on a terminal; spaced-out log lines otherwise."""
    stream = kwargs.get("file") or sys.stderr
    if hasattr(stream, "isatty") and stream.isatty():
        return tqdm(iterable, **kwargs)
    kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    kwargs.setdefault("ascii", True)
    return LogLines(iterable, **kwargs)
