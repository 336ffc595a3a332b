"""SIGINT and SIGTERM during training: finish the step, save, stop (`stop_on_signals`)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass


class TrainingStopped(Exception):
    """SIGINT or SIGTERM: last.pt was written at the end of a step; `signal` is its number."""

    def __init__(self, signal_number: int, message: str):
        super().__init__(message)
        self.signal = signal_number


@dataclass
class StopRequest:
    signal: int = 0  # number of the first SIGINT/SIGTERM received (0: none)


@contextlib.contextmanager
def stop_on_signals(announce: bool = True) -> Iterator[StopRequest]:
    """Inside the block, SIGINT and SIGTERM set the yielded request's `signal` (for the caller
    to read between steps) instead of stopping the process, saying so when `announce`; a second
    one raises KeyboardInterrupt at once. The previous handlers come back on leaving. Outside
    the main thread, where handlers cannot be set, nothing is caught.
    """
    request = StopRequest()

    def on_signal(number: int, frame) -> None:
        if request.signal:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        request.signal = number
        if announce:
            name = signal.Signals(number).name
            print(f"{name}: stopping at the end of this step (again to stop at once)", flush=True)

    caught = (signal.SIGINT, signal.SIGTERM)
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, on_signal) for sig in caught} if main else {}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
