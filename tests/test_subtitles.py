"""Cue grouping, and SRT / WebVTT output read back with third-party parsers (srt, webvtt-py)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import srt
import webvtt

from asr.align import WordTiming
from asr.subtitles import Cue, group_cues, to_json_record, to_srt, to_vtt

# srt.parse accepts "." or ":" for the decimal separator; SubRip itself wants this.
SRT_BLOCK = re.compile(r"\d+\n\d{2,}:\d{2}:\d{2},\d{3} --> \d{2,}:\d{2}:\d{2},\d{3}\n[^\n]+\n")


def words(*spec: tuple[str, float, float]) -> list[WordTiming]:
    return [WordTiming(w, start, end, 0.9) for w, start, end in spec]


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def vtt_ms(timestamp: str) -> int:
    """HH:MM:SS.mmm -> milliseconds (webvtt-py's *_in_seconds are whole seconds)."""
    h, m, s = timestamp.split(":")
    return (int(h) * 3600 + int(m) * 60) * 1000 + round(float(s) * 1000)


CUES = [
    Cue(0.0, 1.234, "hello world"),
    Cue(1.5, 2.04, "it's me"),
    Cue(59.5, 61.0, "a minute"),
    Cue(3599.5, 3600.25, "across the hour"),
    Cue(3725.5, 3730.125, "over an hour"),
]


# --- grouping -------------------------------------------------------------------------------


def test_group_joins_words_within_limits():
    cues = group_cues(words(("a", 0.0, 0.5), ("bc", 0.6, 1.0), ("d", 1.2, 1.4)))
    assert cues == [Cue(0.0, 1.4, "a bc d")]


def test_group_max_chars():
    ws = words(("aaaa", 0, 1), ("bbbb", 1, 2), ("cccc", 2, 3), ("dd", 3, 4))
    # "aaaa bbbb" is 9 characters: fits 9, not 8.
    assert [c.text for c in group_cues(ws, max_chars=9)] == ["aaaa bbbb", "cccc dd"]
    assert [c.text for c in group_cues(ws, max_chars=8)] == ["aaaa", "bbbb", "cccc dd"]


def test_group_max_seconds():
    ws = words(("a", 0.0, 1.0), ("b", 1.0, 3.0), ("c", 3.0, 3.5), ("d", 3.6, 4.0))
    cues = group_cues(ws, max_seconds=3.0)
    assert cues == [Cue(0.0, 3.0, "a b"), Cue(3.0, 4.0, "c d")]


def test_group_max_gap():
    ws = words(("a", 0.0, 1.0), ("b", 2.0, 2.5), ("c", 3.6, 4.0))
    assert group_cues(ws, max_gap=1.0) == [Cue(0.0, 2.5, "a b"), Cue(3.6, 4.0, "c")]
    assert group_cues(ws, max_gap=0.5) == [
        Cue(0.0, 1.0, "a"),
        Cue(2.0, 2.5, "b"),
        Cue(3.6, 4.0, "c"),
    ]


def test_group_overlong_word_gets_its_own_cue():
    ws = words(("a", 0, 1), ("x" * 50, 1, 8), ("b", 8, 9))
    assert group_cues(ws) == [Cue(0, 1, "a"), Cue(1, 8, "x" * 50), Cue(8, 9, "b")]


def test_group_empty():
    assert group_cues([]) == []


# --- SRT ------------------------------------------------------------------------------------


def test_srt_exact_text():
    assert to_srt([Cue(0.0, 1.5, "hi there"), Cue(3725.5, 3726.0, "later")]) == (
        "1\n00:00:00,000 --> 00:00:01,500\nhi there\n\n2\n01:02:05,500 --> 01:02:06,000\nlater\n"
    )


def test_srt_parses_back():
    text = to_srt(CUES)
    assert all(SRT_BLOCK.fullmatch(block) for block in re.split(r"(?<=\n)\n", text))
    parsed = list(srt.parse(text))  # raises srt.SRTParseError on anything it cannot match
    assert [(s.index, s.start, s.end, s.content) for s in parsed] == [
        (n, timedelta(milliseconds=ms(c.start)), timedelta(milliseconds=ms(c.end)), c.text)
        for n, c in enumerate(CUES, start=1)
    ]
    assert parsed[3].start == timedelta(minutes=59, seconds=59, milliseconds=500)
    assert parsed[4].end == timedelta(hours=1, minutes=2, seconds=10, milliseconds=125)


def test_srt_parser_is_strict():
    # What the round trip relies on: srt.parse rejects a block it cannot read.
    with pytest.raises(srt.SRTParseError):
        list(srt.parse("1\n00:00:01,000 -> 00:00:02,000\nhi\n"))


def test_srt_empty():
    assert to_srt([]) == ""
    assert list(srt.parse(to_srt([]))) == []


def test_zero_length_cue_lasts_one_millisecond():
    cues = group_cues(words(("a", 1.0, 1.0)))
    parsed = list(srt.parse(to_srt(cues)))
    assert (parsed[0].start, parsed[0].end) == (timedelta(seconds=1), timedelta(seconds=1.001))
    (caption,) = webvtt.from_string(to_vtt(cues), strict=True).captions
    assert (caption.start, caption.end) == ("00:00:01.000", "00:00:01.001")
    # Times within the same millisecond too.
    parsed = list(srt.parse(to_srt([Cue(2.0001, 2.0004, "b")])))
    assert parsed[0].end - parsed[0].start == timedelta(milliseconds=1)


def test_negative_time_raises():
    with pytest.raises(ValueError, match="before 0"):
        to_srt([Cue(-0.5, 1.0, "a")])


# --- WebVTT ---------------------------------------------------------------------------------


def test_vtt_exact_text():
    assert to_vtt([Cue(0.0, 1.5, "hi there"), Cue(3725.5, 3726.0, "later")]) == (
        "WEBVTT\n"
        "\n"
        "00:00:00.000 --> 00:00:01.500\nhi there\n"
        "\n"
        "01:02:05.500 --> 01:02:06.000\nlater\n"
    )


def test_vtt_parses_back():
    parsed = webvtt.from_string(to_vtt(CUES), strict=True).captions
    assert [(vtt_ms(c.start), vtt_ms(c.end), c.text) for c in parsed] == [
        (ms(c.start), ms(c.end), c.text) for c in CUES
    ]
    assert (parsed[3].start, parsed[4].end) == ("00:59:59.500", "01:02:10.125")


def test_vtt_escapes_markup():
    (caption,) = webvtt.from_string(to_vtt([Cue(0, 1, "a & <b> -->")]), strict=True).captions
    assert caption.raw_text == "a &amp; &lt;b&gt; --&gt;"


def test_vtt_empty():
    assert to_vtt([]) == "WEBVTT\n"
    assert webvtt.from_string(to_vtt([]), strict=True).captions == []


def test_vtt_strict_parser_rejects_bad_timestamps():
    with pytest.raises(webvtt.errors.MalformedCaptionError):
        webvtt.from_string("WEBVTT\n\n0:00:01.000 --> 00:00:02.500\nab\n", strict=True)


# --- JSON -----------------------------------------------------------------------------------


def test_json_record():
    ws = [WordTiming("hello", 0.12000000000000001, 0.48, 0.91234), WordTiming("you", 0.5, 0.7, 1.0)]
    record = to_json_record("a.wav", "hello you", ws, nbest=[("hello you", -1.5), ("hollow", -3.0)])
    assert record == {
        "file": "a.wav",
        "text": "hello you",
        "words": [
            {"word": "hello", "start": 0.12, "end": 0.48, "confidence": 0.912},
            {"word": "you", "start": 0.5, "end": 0.7, "confidence": 1.0},
        ],
        "nbest": [{"text": "hello you", "score": -1.5}, {"text": "hollow", "score": -3.0}],
    }
    assert json.loads(json.dumps(record)) == record


def test_json_record_without_nbest_or_words():
    assert to_json_record("b.wav", "", []) == {"file": "b.wav", "text": "", "words": []}
