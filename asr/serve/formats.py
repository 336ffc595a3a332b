"""A transcript in each of OpenAI's response formats, and the server-sent events of a stream.

`json`: {"text", "usage"}; `text`: the text and a newline; `srt` / `vtt`: subtitles with cues
grouped from the word times (asr.subtitles); `verbose_json`: {"task", "language", "duration",
"text", "segments", "usage"} and "words" when the word granularity was asked for. Segment
fields OpenAI's clients expect and a CTC model does not have are given fixed values: `tokens`
[] (the model's units are not Whisper's tokens), `temperature` 0 (decoding is deterministic),
`no_speech_prob` 0 (segments are cut where the voice-activity detector hears speech).
"""

from __future__ import annotations

import json
import math
import zlib

from asr.serve.service import TimedSegment, Transcript
from asr.subtitles import group_cues, to_srt, to_vtt

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "text/plain; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


def needs_words(response_format: str, granularities: list[str]) -> bool:
    """Whether the response needs word times (subtitles, or verbose_json with words)."""
    return response_format in ("srt", "vtt") or (
        response_format == "verbose_json" and "word" in granularities
    )


def render(
    transcript: Transcript, response_format: str, granularities: list[str], language: str
) -> str:
    """The response body. Word times must be in the transcript when `needs_words`."""
    if response_format == "text":
        return transcript.text + "\n"
    if response_format in ("srt", "vtt"):
        cues = group_cues(transcript.words)
        return to_srt(cues) if response_format == "srt" else to_vtt(cues)
    if response_format == "json":
        return json.dumps({"text": transcript.text, "usage": usage(transcript.duration)})
    return json.dumps(verbose_json(transcript, language, "word" in granularities))


def usage(duration: float) -> dict:
    return {"type": "duration", "seconds": round(duration, 3)}


def verbose_json(transcript: Transcript, language: str, words: bool) -> dict:
    """OpenAI's verbose transcription object; "words" only when `words`."""
    body = {
        "task": "transcribe",
        "language": language,
        "duration": round(transcript.duration, 3),
        "text": transcript.text,
        "segments": [segment_record(i, s) for i, s in enumerate(transcript.segments)],
        "usage": usage(transcript.duration),
    }
    if words:
        body["words"] = [
            {
                "word": w.word,
                "start": round(w.start, 3),
                "end": round(w.end, 3),
                "probability": round(w.confidence, 3),
            }
            for w in transcript.words
        ]
    return body


def segment_record(index: int, segment: TimedSegment) -> dict:
    """One verbose_json segment. `avg_logprob` is the mean log confidence of its words (0 when
    untimed or empty); `compression_ratio` its text's length over its zlib-compressed length.

    >>> record = segment_record(0, TimedSegment(1.5, 3.0, "a b", None))
    >>> record["seek"], record["start"], record["text"], record["avg_logprob"]
    (150, 1.5, 'a b', 0.0)
    """
    timed = segment.words or []
    logprob = sum(math.log(max(w.confidence, 1e-10)) for w in timed) / len(timed) if timed else 0.0
    raw = segment.text.encode("utf-8")
    return {
        "id": index,
        "seek": round(segment.start * 100),  # in 10 ms frames, as Whisper counts it
        "start": round(segment.start, 3),
        "end": round(segment.end, 3),
        "text": segment.text,
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": round(logprob, 4),
        "compression_ratio": round(len(raw) / len(zlib.compress(raw)), 4) if raw else 0.0,
        "no_speech_prob": 0.0,
    }


def sse(event: dict) -> str:
    """One server-sent event carrying `event` as JSON.

    >>> sse({"type": "transcript.text.delta", "delta": "a"})
    'data: {"type": "transcript.text.delta", "delta": "a"}\\n\\n'
    """
    return f"data: {json.dumps(event)}\n\n"
