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
    bar = progress_bar(range(100), desc="train", file=log, mininterval=3600.0, leave=False)
    for i in bar:
        if i == 41:
            break
    bar.close()
    assert " 41/100 " in log.getvalue().splitlines()[-1]


def test_terminal_gets_a_redrawn_bar():
    term = Terminal()
    bar = progress_bar(range(3), desc="x", file=term)
    assert not isinstance(bar, LogLines)
    list(bar)
    assert "\r" in term.getvalue()
