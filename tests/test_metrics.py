"""WER/CER against hand-counted edits, and the written report."""

from __future__ import annotations

import json

import pytest

from asr.metrics import frequent_errors, score_corpus, score_utterance, write_report

# (reference, hypothesis, word errors, words, char errors, chars); spaces count as characters.
CASES = {
    "exact": ("the cat sat", "the cat sat", 0, 3, 0, 11),
    "substitution": ("the cat sat", "the bat sat", 1, 3, 1, 11),  # cat->bat; c->b
    "insertion": ("a b", "a x b", 1, 2, 2, 3),  # +x; +"x", +" "
    "deletion": ("the cat sat", "the sat", 1, 3, 4, 11),  # -cat; -"cat "
    # two->too and +five; "two"->"too" is one character substitution, " five" five insertions.
    "mixed": ("one two three four", "one too three four five", 2, 4, 6, 18),
    "empty hypothesis": ("hello world", "", 2, 2, 11, 11),
    "empty reference": ("", "uh huh", 2, 0, 6, 0),
    "both empty": ("", "", 0, 0, 0, 0),
}


@pytest.mark.parametrize("name", CASES)
def test_score_utterance_counts(name):
    ref, hyp, w_err, words, c_err, chars = CASES[name]
    s = score_utterance(f"{name}.wav", ref, hyp)
    assert (s.word_errors, s.words, s.char_errors, s.chars) == (w_err, words, c_err, chars)
    assert (s.audio_filepath, s.reference, s.hypothesis) == (f"{name}.wav", ref, hyp)


def test_score_corpus_pools_counts():
    scores = [score_utterance(name, *CASES[name][:2]) for name in CASES]
    total = score_corpus(scores)
    assert sum(c[2] for c in CASES.values()) == 9  # 0+1+1+1+2+2+2+0
    assert sum(c[3] for c in CASES.values()) == 17  # 3+3+2+3+4+2+0+0
    char_errors = sum(c[4] for c in CASES.values())  # 0+1+2+4+6+11+6+0 = 30
    chars = sum(c[5] for c in CASES.values())  # 11+11+3+11+18+11+0+0 = 65
    assert (total.word_errors, total.words, total.utterances) == (9, 17, 8)
    assert total.wer == pytest.approx(9 / 17)
    assert total.cer == pytest.approx(char_errors / chars) == pytest.approx(30 / 65)


def test_wer_can_exceed_one():
    total = score_corpus([score_utterance("a", "yes", "no no no")])
    assert total.wer == pytest.approx(3.0)


def test_score_corpus_of_nothing():
    total = score_corpus([])
    assert (total.wer, total.cer, total.utterances, total.words) == (0.0, 0.0, 0, 0)


def test_write_report(tmp_path):
    scores = [
        score_utterance("b.wav", "the cat sat", "the bat sat"),
        score_utterance("a.wav", "hello world", ""),
        score_utterance("c.wav", "yes", "yes"),
    ]
    total = score_corpus(scores)  # 3 word errors / 6 words; 12 char errors / 25 chars
    out = tmp_path / "decode"
    report, summary = write_report(out, "dev", scores, total, extra={"checkpoint": "best.pt"})
    assert report == out / "errs-dev.txt"
    assert summary == out / "summary-dev.json"

    data = json.loads(summary.read_text())
    assert data == {
        "wer": pytest.approx(0.5),
        "cer": pytest.approx(12 / 25),
        "utterances": 3,
        "word_errors": 3,
        "words": 6,
        "frequent_errors": [["cat -> bat", 1], ["hello -> *", 1], ["world -> *", 1]],
        "checkpoint": "best.pt",
    }

    lines = report.read_text().splitlines()
    assert lines[0] == "%WER 50.00 [ 3 / 6 ]  %CER 48.00  utterances 3"
    assert lines[2:6] == [
        "Most frequent word errors (reference -> hypothesis, * = none):",
        "     1  cat -> bat",
        "     1  hello -> *",
        "     1  world -> *",
    ]
    # Worst utterance first, then by path.
    headers = [line for line in lines[7:] if not line.startswith("  ")]
    assert [h.split()[0] for h in headers] == ["a.wav", "b.wav", "c.wav"]
    assert headers[0] == "a.wav  word errors 2/2  char errors 11/11"
    i = lines.index(headers[1])
    assert lines[i + 1 : i + 3] == ["  REF: the cat sat", "  HYP: the bat sat"]
    assert sorted(p.name for p in out.iterdir()) == ["errs-dev.txt", "summary-dev.json"]


def test_report_gives_the_wer_of_each_speaker_folder(tmp_path):
    scores = [
        score_utterance("wav/fash/a.wav", "one two", "one two"),
        score_utterance("wav/fash/b.wav", "three", "tree"),
        score_utterance("wav/mblw/c.wav", "four five six", "four six"),
    ]
    report, summary = write_report(tmp_path, "test", scores, score_corpus(scores))
    per_folder = json.loads(summary.read_text())["per_folder"]
    assert per_folder["fash"]["wer"] == pytest.approx(1 / 3)
    assert per_folder["mblw"]["wer"] == pytest.approx(1 / 3)
    assert (per_folder["fash"]["utterances"], per_folder["mblw"]["words"]) == (2, 3)
    lines = report.read_text().splitlines()
    i = lines.index("WER per folder (speaker):")
    assert lines[i + 1].split() == ["fash", "33.33%", "[", "1", "/", "3", "]"]
    assert frequent_errors(scores) == [("three -> tree", 1), ("five -> *", 1)]
