"""Word timings -> subtitle cues -> SRT / WebVTT text, and the JSON record of one transcript."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from asr.align import WordTiming
from asr.segmenter import Segment


@dataclass
class Cue:
    start: float  # seconds
    end: float  # seconds
    text: str  # one line: the cue's words joined by single spaces


def group_cues(
    words: Sequence[WordTiming],
    max_chars: int = 42,
    max_seconds: float = 5.0,
    max_gap: float = 1.0,
) -> list[Cue]:
    """Words in time order -> cues.

    A word starts a new cue when adding it would make the cue's text longer than `max_chars`
    or the cue longer than `max_seconds`, or when the pause before it is longer than
    `max_gap`. A word that alone breaks a limit gets a cue of its own (words are not split).
    """
    cues: list[Cue] = []
    for w in words:
        if cues:
            cue = cues[-1]
            fits = (
                len(cue.text) + 1 + len(w.word) <= max_chars
                and w.end - cue.start <= max_seconds
                and w.start - cue.end <= max_gap
            )
            if fits:
                cue.text += " " + w.word
                cue.end = max(cue.end, w.end)
                continue
        cues.append(Cue(w.start, w.end, w.word))
    return cues


def to_srt(cues: Sequence[Cue]) -> str:
    """SubRip: numbered blocks `1`, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, text; "" for no cues.

    Times are rounded to milliseconds; a cue that would not end after it starts (a zero-length
    word, or times within the same millisecond) is shown for 1 ms, as players reject end <= start.
    """
    blocks = []
    for n, cue in enumerate(cues, start=1):
        start, end = _cue_milliseconds(cue)
        blocks.append(f"{n}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{cue.text}\n")
    return "\n".join(blocks)


def to_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT: "WEBVTT" header, then blocks `HH:MM:SS.mmm --> HH:MM:SS.mmm`, text.

    Times as in `to_srt`; `&`, `<` and `>` in the text are escaped, as WebVTT requires.
    """
    blocks = ["WEBVTT\n"]
    for cue in cues:
        start, end = _cue_milliseconds(cue)
        text = cue.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        blocks.append(f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{text}\n")
    return "\n".join(blocks)


def to_json_record(
    path: str,
    text: str,
    words: Sequence[WordTiming],
    nbest: list[tuple[str, float]] | None = None,
    segments: Sequence[Segment] | None = None,
) -> dict:
    """One transcript as a JSON-ready dict; times rounded to milliseconds.

    {"file", "text", "words": [{"word", "start", "end", "confidence"}], "nbest": [{"text",
    "score"}], "segments": [{"start", "end", "text"}]}, the last two only when given (a long
    file cut at pauses has segments, times from the start of the file).
    """
    record: dict = {
        "file": path,
        "text": text,
        "words": [
            {
                "word": w.word,
                "start": round(w.start, 3),
                "end": round(w.end, 3),
                "confidence": round(w.confidence, 3),
            }
            for w in words
        ],
    }
    if nbest is not None:
        record["nbest"] = [{"text": t, "score": float(score)} for t, score in nbest]
    if segments is not None:
        record["segments"] = [
            {"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text} for s in segments
        ]
    return record


def _cue_milliseconds(cue: Cue) -> tuple[int, int]:
    start = round(cue.start * 1000)
    if start < 0:
        raise ValueError(f"cue {cue.text!r} starts before 0: {cue.start} s")
    return start, max(round(cue.end * 1000), start + 1)


def _timestamp(ms: int, decimal_sep: str) -> str:
    """Milliseconds -> HH:MM:SS<sep>mmm (hours grow past two digits when needed)."""
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{decimal_sep}{ms:03d}"
