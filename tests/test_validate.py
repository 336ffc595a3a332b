"""Manifest validation: every problem at once, `asr validate`, and training/evaluation refusing
(or, with data.drop_bad_lines, dropping) bad lines in the same words."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.cli import main
from asr.config import load_config
from asr.data import ManifestError
from asr.tokenizers import CharTokenizer
from asr.train import DataError, Trainer, load_normalised
from asr.validate import validate_manifest
from tests.bad_audio import make_checkpoint
from tests.conftest import tiny_overrides

RATE = 8000


def _wav(path: Path, seconds: float) -> Path:
    sf.write(path, np.full(round(seconds * RATE), 0.1, np.float32), RATE)
    return path


def _line(audio: str, duration, text, **extra) -> str:
    return json.dumps({"audio_filepath": audio, "duration": duration, "text": text, **extra})


@pytest.fixture
def bad_manifest(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """A manifest with one problem per line -> (path, {line: words of its problem})."""
    _wav(tmp_path / "a.wav", 1.0)
    _wav(tmp_path / "b.wav", 2.0)
    _wav(tmp_path / "c.wav", 2.0)
    _wav(tmp_path / "long.wav", 4.0)
    rows = [
        (_line("a.wav", 1.0, "abc"), None),  # 1: good
        ('{"audio_filepath": "a.wav", "duration": 1.0, "text": "ab"', "not valid JSON"),  # 2
        (json.dumps({"audio_filepath": "b.wav", "text": "ab"}), "missing field 'duration'"),  # 3
        (_line("gone.wav", 1.0, "ab"), "gone.wav: no such file"),  # 4
        (_line("b.wav", -2.0, "ab"), "duration must be positive, got -2"),  # 5
        (_line("b.wav", 0, "ab"), "duration must be positive, got 0"),  # 6
        (_line("b.wav", 2.5, "ab"), "duration 2.5 s but"),  # 7: 25% off
        (_line("c.wav", 2.1, "ab"), None),  # 8: 5% off: accepted
        (_line("long.wav", 1.0, "   "), "empty text"),  # 9
        (_line("a.wav", 1.0, "abc"), "duplicate of line 1"),  # 10
        (_line("long.wav", 1.0, "ab", offset=1.0), None),  # 11: a segment
        (_line("long.wav", 1.0, "ab", offset=2.0), None),  # 12: another span: distinct
        (_line("long.wav", 1.0, "ba", offset=1.0), "duplicate of line 11"),  # 13
        (_line("long.wav", 4.0, "abd"), None),  # 14: fine without a model
        ("[1, 2]", "not a JSON object"),  # 15
        (_line("long.wav", "4", "ab"), "duration is not a number"),  # 16
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(row + "\n" for row, _ in rows), encoding="utf-8")
    return path, {i: cause for i, (_, cause) in enumerate(rows, 1) if cause}


def test_every_problem_is_listed_with_its_line(bad_manifest):
    path, expected = bad_manifest
    result = validate_manifest(path)
    got = {p.line: p.cause for p in result.problems}
    assert set(got) == set(expected), result.problems
    for line, words in expected.items():
        assert words in got[line], (line, got[line])
        problem = next(p for p in result.problems if p.line == line)
        assert str(problem).startswith(f"{path}:{line}: ")
    assert [Path(u.audio_filepath).name for u in result.usable()] == ["a.wav", "c.wav"] + [
        "long.wav"
    ] * 3
    assert result.total == 16 and result.bad_lines == len(expected)


def test_vocabulary_with_a_tokenizer(bad_manifest):
    path, _ = bad_manifest
    tokenizer = CharTokenizer.from_texts(["abc cab"])
    got = {p.line: p.cause for p in validate_manifest(path, tokenizer).problems}
    assert got[14] == "outside the model's vocabulary: 'd'"


def test_bom_crlf_and_blank_last_lines_are_accepted_and_reported(tmp_path):
    _wav(tmp_path / "a.wav", 1.0)
    _wav(tmp_path / "b.wav", 1.0)
    body = _line("a.wav", 1.0, "ab") + "\r\n" + _line("b.wav", 1.0, "ba") + "\r\n\r\n\n"
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    result = validate_manifest(path)
    assert result.problems == []
    assert len(result.usable()) == 2
    notes = [str(n) for n in result.notes]
    assert f"{path}:1: note: UTF-8 byte-order mark (accepted)" in notes
    assert f"{path}:1: note: CRLF line ends on 3 line(s) (accepted)" in notes
    assert f"{path}:3: note: blank line(s) at the end (accepted)" in notes


def test_a_blank_line_between_lines_is_an_error(tmp_path):
    _wav(tmp_path / "a.wav", 1.0)
    path = tmp_path / "m.jsonl"
    path.write_text(_line("a.wav", 1.0, "ab") + "\n\n" + _line("a.wav", 1.0, "ab", offset=0.0))
    assert [str(p) for p in validate_manifest(path).problems] == [f"{path}:2: blank line"]


def test_asr_validate_lists_everything_and_exits_nonzero(bad_manifest, tmp_path, capsys):
    path, expected = bad_manifest
    model = make_checkpoint(tmp_path / "m.pt")
    assert main(["validate", str(path), "--model", str(model)]) == 1
    lines = capsys.readouterr().out.splitlines()
    problems = [line for line in lines[:-1] if ": note:" not in line]
    assert all(line.startswith(f"{path}:") for line in problems)
    assert len(problems) == len(expected) + 1  # + the vocabulary of line 14
    assert lines[-1] == f"{path}: {len(problems)} problem(s) on 12 of 16 line(s)"


def test_asr_validate_clean_manifest(tmp_path, capsys):
    _wav(tmp_path / "a.wav", 1.0)
    path = tmp_path / "m.jsonl"
    path.write_text(_line("a.wav", 1.0, "ab") + "\n")
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: 1 utterance(s), no problems\n"


def test_training_refuses_in_the_same_words_or_drops_with_a_count(bad_manifest, capsys):
    path, expected = bad_manifest
    words = [str(p) for p in validate_manifest(path).problems]
    with pytest.raises(DataError) as err:
        load_normalised(str(path), "train")
    assert err.value.problems == words
    assert "data.drop_bad_lines=true" in str(err.value)
    utts = load_normalised(str(path), "train", drop_bad_lines=True)
    assert len(utts) == 5
    out = capsys.readouterr().out
    assert f"{path}: {len(expected)} bad line(s) of 16 left out (data.drop_bad_lines)" in out
    assert all(f"warning: {w}" in out for w in words)


def test_trainer_refuses_a_bad_manifest_through_the_command(bad_manifest, tmp_path, capsys):
    path, _ = bad_manifest
    overrides = tiny_overrides(path)
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  epochs: 1\n")
    args = ["train", "--config", str(config), "--out-dir", str(tmp_path / "x"), *overrides]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{path}:2: not valid JSON" in err and f"{path}:10: duplicate of line 1" in err
    cfg = load_config(None, [*overrides, "data.drop_bad_lines=true"])
    trainer = Trainer(cfg, tmp_path / "drop")
    assert len(trainer.train_utts) == 5


def test_evaluation_refuses_line_errors_but_names_bad_audio(tmp_path, capsys):
    model = make_checkpoint(tmp_path / "m.pt")
    _wav(tmp_path / "a.wav", 1.0)
    (tmp_path / "broken.wav").write_bytes(b"RIFF junk")
    path = tmp_path / "m.jsonl"
    path.write_text(_line("a.wav", 1.0, "ab") + "\n" + _line("broken.wav", 1.0, "ab") + "\n")
    args = ["evaluate", "--model", str(model), "--manifest", str(path), "--out-dir", str(tmp_path)]
    assert main(args) == 1  # the audio problem: named, the good line still scored
    out, err = capsys.readouterr()
    assert "(1 utterances" in out
    assert f"asr: skipped {tmp_path / 'broken.wav'}: cannot read audio" in err
    assert "asr: 1 utterance(s) failed, 1 scored" in err
    path.write_text(path.read_text() + "{oops\n")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{path}:3: not valid JSON" in err and "broken.wav" not in err


def test_unreadable_manifest_is_one_error(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest"):
        validate_manifest(tmp_path / "none.jsonl")


def test_segments_of_one_file_read_its_header_once(tmp_path, monkeypatch):
    import asr.validate

    _wav(tmp_path / "long.wav", 4.0)
    path = tmp_path / "m.jsonl"
    lines = [_line("long.wav", 1.0, "ab", offset=float(i)) for i in range(4)]
    lines.append(_line("long.wav", 1.0, "ab", offset=4.5))  # starts past the end
    path.write_text("\n".join(lines) + "\n")
    calls = []
    real = asr.validate.audio_duration
    monkeypatch.setattr(asr.validate, "audio_duration", lambda p: calls.append(p) or real(p))
    result = validate_manifest(path)
    assert len(calls) == 1 and len(result.usable()) == 4
    assert [p.line for p in result.problems] == [5]
    assert "segment 4.5-5.5 s lies past the end of the audio (4.000 s)" in result.problems[0].cause


def test_a_line_that_is_not_utf8_is_named_and_the_rest_checked(tmp_path):
    _wav(tmp_path / "a.wav", 1.0)
    path = tmp_path / "m.jsonl"
    good = _line("a.wav", 1.0, "ab").encode()
    latin1 = '{"audio_filepath": "a.wav", "duration": 1.0, "text": "caf\xe9"}'.encode("latin-1")
    path.write_bytes(good + b"\n" + latin1 + b"\n")
    result = validate_manifest(path)
    assert [(p.line, p.cause.split(" (")[0]) for p in result.problems] == [(2, "not UTF-8 text")]
    assert len(result.usable()) == 1
