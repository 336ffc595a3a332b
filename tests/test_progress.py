"""Progress output: a terminal gets tqdm's bar, a log file gets whole, spaced-out lines."""

from __future__ import annotations

import io

from asr.progress import LogLines, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_file_gets_whole_lines_without_carriage_returns():
    log = io.StringIO()
    bar = progress_bar(range(200), desc="epoch 1/2", file=log, mininterval=3600.0)
    assert isinstance(bar, LogLines)
    for i in bar:
        bar.set_postfix(loss=f"{i:.3f}")
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # the opening line and the final count: a 200-step loop does not write 200 lines
    assert len(lines) == 2, lines
    assert lines[-1].startswith("epoch 1/2: 100%") and "200/200" in lines[-1]


def test_stopping_early_still_reports_where_it_stopped():
    log = io.StringIO()
    bar = progress_bar(range(100), desc="train", file=log, mininterval=3600.0)
    for i in bar:
        if i == 41:
            break
    bar.close()
    assert " 41/100 " in log.getvalue().splitlines()[-1]


def test_many_short_bars_share_one_interval_on_their_stream():
    # One bar per epoch, as training makes them: 50 epochs within one interval give one line,
    # where each bar alone would write its opening line.
    log = io.StringIO()
    for epoch in range(50):
        bar = progress_bar(range(20), desc=f"epoch {epoch + 1}/50", file=log, leave=False)
        for i in bar:
            bar.set_postfix(loss=f"{i:.3f}")
        bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("epoch 1/50:   0%"), lines
    other = io.StringIO()  # another stream keeps its own interval
    list(progress_bar(range(3), desc="x", file=other, leave=False))
    assert len(other.getvalue().splitlines()) == 1


def test_terminal_gets_a_redrawn_bar():
    term = Terminal()
    bar = progress_bar(range(3), desc="x", file=term)
    assert not isinstance(bar, LogLines)
    list(bar)
    assert "\r" in term.getvalue()


class SlottedStream:
    """A file-like object that takes no weak reference."""

    __slots__ = ("lines",)

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        if text:
            self.lines.append(text)

    def flush(self) -> None:
        pass


def test_a_stream_without_weak_references_gets_each_bar_its_own_interval():
    stream = SlottedStream()
    for epoch in range(3):
        for _ in progress_bar(range(5), desc=f"epoch {epoch + 1}", file=stream, leave=False):
            pass
    assert [line.split(":")[0] for line in stream.lines] == ["epoch 1", "epoch 2", "epoch 3"]
