"""TIMIT: a small copy written here in the LDC layout (NIST SPHERE .WAV with TIMIT's own
header, .PHN/.WRD/.TXT), in upper case, lower case and with converted .WAV.wav files; the
standard split, the phone sets and their folding, every problem named, and the recipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.checkpoint import load_checkpoint
from asr.cli import main
from asr.data import read_manifest
from asr.datasets import DatasetError, load_dataset, prepare_dataset
from data_prep import timit
from data_prep.timit import TimitError, fold_phones, prepare_timit
from tests.conftest import ROOT

RATE = 16000

# (part, dialect, speaker, sentence, TIMIT phones). Every speaker also gets SA1 and SA2, which
# must be dropped. fcjf0/marc0 are training speakers, mdab0/felc0 (DR1) and mtas1 (DR2) core
# test speakers, faks0/mrjm4 development speakers; mzzz0 is one of the 94 TEST speakers used
# by neither.
SENTENCES = [
    ("train", "dr1", "fcjf0", "si1027", "h# q ix zh bcl b ax-h pau h#"),
    ("train", "dr1", "fcjf0", "sx37", "h# dh ix kcl k ae tcl t h#"),
    ("train", "dr2", "marc0", "si1188", "h# hv ux em eng nx h#"),
    ("train", "dr2", "marc0", "sx108", "h# axr el en epi ao h#"),
    ("test", "dr1", "mdab0", "si1039", "h# s iy dcl d gcl g h#"),
    ("test", "dr1", "felc0", "sx126", "h# w ah dx er pcl p h#"),
    ("test", "dr2", "mtas1", "si1473", "h# ch oy jh uh h#"),
    ("test", "dr1", "faks0", "si943", "h# th aw ay ey ow h#"),
    ("test", "dr7", "mrjm4", "sx22", "h# f v z sh y r h#"),
    ("test", "dr3", "mzzz0", "si100", "h# m n ng l h#"),
    ("test", "dr1", "mdab0", "sx139", "h# b iy h#"),
    ("test", "dr1", "felc0", "si756", "h# k ih tcl h#"),
    ("test", "dr2", "mtas1", "sx118", "h# g uw dcl h#"),
    ("test", "dr1", "faks0", "sx133", "h# p aa q h#"),
    ("test", "dr7", "mrjm4", "si1855", "h# jh eh ax h#"),
]
# The manifests' text, written out by hand from Kaldi's conf/phones.60-48-39.map.
EXPECTED_39 = {
    "si1027": "sil ih sh sil b ah sil sil",
    "sx37": "sil dh ih sil k ae sil t sil",
    "si1188": "sil hh uw m ng n sil",
    "sx108": "sil er l n sil aa sil",
    "si1039": "sil s iy sil d sil g sil",
    "sx126": "sil w ah dx er sil p sil",
    "si1473": "sil ch oy jh uh sil",
    "si943": "sil th aw ay ey ow sil",
    "sx22": "sil f v z sh y r sil",
    "sx139": "sil b iy sil",
    "si756": "sil k ih sil sil",
    "sx118": "sil g uw sil sil",
    "sx133": "sil p aa sil",
    "si1855": "sil jh eh ah sil",
}
EXPECTED_48 = {
    "si1027": "sil ix zh vcl b ax sil sil",
    "sx108": "sil er el en epi ao sil",
    "si1039": "sil s iy vcl d vcl g sil",
}
EXPECTED_61 = {"si1027": "sil q ix zh bcl b axh pau sil", "si1188": "sil hv ux em eng nx sil"}
SPLITS = {
    "train": ["si1027", "sx37", "si1188", "sx108"],
    "dev": ["si943", "sx133", "si1855", "sx22"],
    "test": ["si756", "sx126", "si1039", "sx139", "si1473", "sx118"],
}
WORDS = "she had your dark suit"


def _samples(index: int) -> int:
    return 8000 + 160 * index  # every file its own length, so durations trace back to files


def write_sphere(path: Path, samples: np.ndarray, utterance_id: str) -> None:
    """A .WAV as TIMIT ships it: a 1024-byte NIST SPHERE header of TIMIT's own fields, then
    little-endian 16-bit samples."""
    header = [
        "NIST_1A", "   1024", "database_id -s5 TIMIT", "database_version -s3 1.0",
        f"utterance_id -s{len(utterance_id)} {utterance_id}", "channel_count -i 1",
        f"sample_count -i {len(samples)}", "sample_rate -i 16000",
        f"sample_min -i {samples.min()}", f"sample_max -i {samples.max()}",
        "sample_n_bytes -i 2", "sample_byte_format -s2 01", "sample_sig_bits -i 16", "end_head",
    ]  # fmt: skip
    text = ("\n".join(header) + "\n").encode("ascii").ljust(1024, b" ")
    path.write_bytes(text + samples.astype("<i2").tobytes())


def _name(text: str, layout: str) -> str:
    return text.lower() if layout == "lower" else text.upper()


def write_timit(root: Path, layout: str = "upper") -> Path:
    """A small TIMIT copy under root/timit/TIMIT; returns root/timit (the copy sits one level
    down, as on the LDC disc). layout: upper (LDC), lower (all names lower-case) or converted
    (each .WAV also as a RIFF .WAV.wav; si1188 only as .WAV.wav)."""
    corpus = root / "timit" / _name("timit", layout)
    rows = [*SENTENCES]
    for speaker in sorted({(p, d, s) for p, d, s, _, _ in SENTENCES}):
        rows += [(*speaker, "sa1", "h# sh iy h#"), (*speaker, "sa2", "h# dcl d ow h#")]
    for index, (part, dialect, speaker, sentence, phones) in enumerate(rows):
        folder = corpus / _name(part, layout) / _name(dialect, layout) / _name(speaker, layout)
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / _name(sentence, layout)
        n = _samples(index)
        wav = (3000 * np.sin(np.arange(n) / (5 + index))).astype(np.int16)
        if not (layout == "converted" and sentence == "si1188"):
            write_sphere(stem.with_suffix(_name(".wav", layout)), wav, f"{speaker}_{sentence}")
        if layout == "converted":
            sf.write(f"{stem}.WAV.wav", wav, RATE, subtype="PCM_16")
        symbols = phones.split()
        bounds = np.linspace(0, n, len(symbols) + 1).astype(int)
        phn = "".join(
            f"{a} {b} {p}\n" for a, b, p in zip(bounds[:-1], bounds[1:], symbols, strict=True)
        )
        stem.with_suffix(_name(".phn", layout)).write_text(phn)
        stem.with_suffix(_name(".txt", layout)).write_text(f"0 {n} {WORDS.capitalize()}.\n")
        ends = np.linspace(2000, n, len(WORDS.split()) + 1).astype(int)
        wrd = "".join(
            f"{a} {b} {w}\n" for a, b, w in zip(ends[:-1], ends[1:], WORDS.split(), strict=True)
        )
        stem.with_suffix(_name(".wrd", layout)).write_text(wrd)
    return root / "timit"


def _index(sentence: str) -> int:
    return next(i for i, row in enumerate(SENTENCES) if row[3] == sentence)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("layout", ["upper", "lower", "converted"])
def test_prepare_checks_every_field(tmp_path: Path, layout: str):
    source = write_timit(tmp_path, layout)
    out = prepare_timit(source, tmp_path / "manifests", allow_partial=True)
    corpus = (source / _name("timit", layout)).resolve()
    for split, sentences in SPLITS.items():
        rows = _rows(out[split])
        assert [Path(r["audio_filepath"]).stem.lower().split(".")[0] for r in rows] == sentences
        for row, sentence in zip(rows, sentences, strict=True):
            part, dialect, speaker, _, _ = SENTENCES[_index(sentence)]
            stem = corpus / _name(part, layout) / _name(dialect, layout) / _name(speaker, layout)
            stem = stem / _name(sentence, layout)
            converted_only = layout == "converted" and sentence == "si1188"
            suffix = ".WAV.wav" if converted_only else _name(".wav", layout)
            assert row["audio_filepath"] == f"{stem}{suffix}"
            assert row["duration"] == pytest.approx(_samples(_index(sentence)) / RATE, abs=1e-4)
            assert row["text"] == EXPECTED_39[sentence]
    assert out["phones"].read_text().split() == timit.phone_inventory(39)


@pytest.mark.parametrize("phones, expected", [(48, EXPECTED_48), (61, EXPECTED_61)])
def test_larger_phone_sets(tmp_path: Path, phones: int, expected: dict[str, str]):
    out = prepare_timit(write_timit(tmp_path), tmp_path / "m", phones=phones, allow_partial=True)
    texts = {
        Path(u.audio_filepath).stem.lower(): u.text
        for split in SPLITS
        for u in read_manifest(out[split])
    }
    for sentence, text in expected.items():
        assert texts[sentence] == text
    assert set(out["phones"].read_text().split()) >= {t for s in texts.values() for t in s.split()}
    assert len(out["phones"].read_text().split()) == phones
    for sentence, text in texts.items():  # folding the larger set gives the 39-set manifest
        assert fold_phones(text, 39) == EXPECTED_39[sentence]


# Lee & Hon's 39 classes written out by hand: each class and the TIMIT phones folded into it;
# every other phone is its own class, and q is removed.
FOLDED_TOGETHER = {
    "sil": "h# pau epi bcl dcl gcl kcl pcl tcl",
    "ah": "ah ax ax-h",
    "ih": "ih ix",
    "aa": "aa ao",
    "er": "er axr",
    "l": "l el",
    "m": "m em",
    "n": "n en nx",
    "ng": "ng eng",
    "hh": "hh hv",
    "uw": "uw ux",
    "sh": "sh zh",
}


def test_folding_61_to_39_by_hand():
    into = {p: cls for cls, group in FOLDED_TOGETHER.items() for p in group.split()}
    for phone in timit.PHONE_MAP:
        expected = "" if phone == "q" else into.get(phone, phone)
        assert fold_phones(phone) == expected, phone
    assert len({into.get(p, p) for p in timit.PHONE_MAP if p != "q"}) == 39
    assert fold_phones("h# ix q ax-h zh bcl b") == "sil ih ah sh sil b"
    assert fold_phones("sil axh vcl cl epi") == "sil ah sil sil sil"  # 61 respelled and 48
    for phone in timit.PHONE_MAP:  # 61 -> 48 -> 39 is 61 -> 39
        assert fold_phones(fold_phones(phone, 48)) == fold_phones(phone)


def test_folding_refuses_what_is_not_a_phone():
    with pytest.raises(TimitError, match="'xx' is not a TIMIT phone"):
        fold_phones("sil xx")
    with pytest.raises(TimitError, match="'vcl' is not a TIMIT phone or cannot fold to 61"):
        fold_phones("vcl", 61)


def test_speaker_lists():
    core = [s for group in timit.CORE_TEST_SPEAKERS.values() for s in group]
    assert len(set(core)) == 24 and len(set(timit.DEV_SPEAKERS)) == 50
    assert not set(core) & set(timit.DEV_SPEAKERS)
    for group in timit.CORE_TEST_SPEAKERS.values():  # 2 men and 1 woman per dialect region
        assert sorted(s[0] for s in group) == ["f", "m", "m"]
    assert sorted(timit.CORE_TEST_SPEAKERS) == [f"dr{i}" for i in range(1, 9)]
    assert timit.EXPECTED == {"train": 3696, "dev": 400, "test": 192}


def test_lists_and_maps_agree_with_lhotse():
    recipe = pytest.importorskip("lhotse.recipes.timit")
    dev, test = recipe.get_speakers()
    assert sorted(dev) == sorted(timit.DEV_SPEAKERS)
    assert sorted(test) == sorted(s for g in timit.CORE_TEST_SPEAKERS.values() for s in g)
    for phones, column in ((48, 0), (39, 1)):
        theirs = recipe.get_phonemes(phones)
        for phone, mapped in timit.PHONE_MAP.items():
            assert theirs[phone] == ("" if mapped is None else mapped[column]), phone


def test_count_check_names_what_is_missing(tmp_path: Path):
    source = write_timit(tmp_path)
    with pytest.raises(TimitError) as err:
        prepare_timit(source, tmp_path / "out")
    message = str(err.value)
    assert message.startswith("incomplete TIMIT copy (--allow-partial prepares what there is):")
    train, dev, test = message.splitlines()[1:]
    assert train.endswith(
        "TRAIN: 4 train utterances of 2 speakers, the full corpus has 3696 of 462; 460 "
        "speakers missing; speakers without 8 SI/SX sentences: fcjf0 (2), marc0 (2)"
    )
    assert "TEST: 4 dev utterances of 2 speakers, the full corpus has 400 of 50" in dev
    assert "speakers missing: fadg0 (TEST), fcal1 (TEST)," in dev and "faks0 (TEST)" not in dev
    assert "TEST: 6 test utterances of 3 speakers, the full corpus has 192 of 24" in test
    assert "fdhc0 (TEST/DR7)" in test and "mdab0 (TEST/DR1)" not in test
    assert test.endswith("without 8 SI/SX sentences: felc0 (2), mdab0 (2), mtas1 (2)")
    assert not (tmp_path / "out").exists()  # nothing written from a partial copy


def test_count_check_passes_a_whole_copy(tmp_path: Path, monkeypatch):
    """Scaled down to the fixture (2 SI/SX sentences a speaker, its speaker lists), the copy is
    whole and passes without --allow-partial; one sentence fewer and it is named."""
    source = write_timit(tmp_path)
    monkeypatch.setattr(timit, "SENTENCES_PER_SPEAKER", 2)
    monkeypatch.setattr(timit, "DEV_SPEAKERS", ("faks0", "mrjm4"))
    monkeypatch.setattr(timit, "CORE_TEST_SPEAKERS", {"dr1": ("mdab0", "felc0"), "dr2": ("mtas1",)})
    monkeypatch.setattr(timit, "EXPECTED_SPEAKERS", {"train": 2, "dev": 2, "test": 3})
    monkeypatch.setattr(timit, "EXPECTED", {"train": 4, "dev": 4, "test": 6})
    out = prepare_timit(source, tmp_path / "out")
    assert [len(read_manifest(out[split])) for split in SPLITS] == [4, 4, 6]
    (source / "TIMIT/TEST/DR2/MTAS1/SX118.WAV").unlink()
    (source / "TIMIT/TEST/DR2/MTAS1/SX118.PHN").unlink()
    with pytest.raises(TimitError) as err:
        prepare_timit(source, tmp_path / "out")
    (line,) = str(err.value).splitlines()[1:]
    assert line == (
        f"{(source / 'TIMIT/TEST').resolve()}: 5 test utterances of 3 speakers, the full corpus "
        "has 6 of 3; speakers without 2 SI/SX sentences: mtas1 (1)"
    )


def _error(source: Path, tmp_path: Path) -> str:
    with pytest.raises(TimitError) as err:
        prepare_timit(source, tmp_path / "out", allow_partial=True)
    assert not (tmp_path / "out").exists()
    return str(err.value)


def test_malformed_phn_line_is_named_with_file_and_line(tmp_path: Path):
    source = write_timit(tmp_path)
    phn = source / "TIMIT/TEST/DR1/FELC0/SX126.PHN"
    lines = phn.read_text().splitlines()
    lines[2] = lines[2].replace(" ", "\t", 1).replace(" ", "")  # "1234\t2345ah": 2 fields
    phn.write_text("\n".join(lines) + "\n")
    assert f"{phn.resolve()}:3: malformed line " in _error(source, tmp_path)


def test_unknown_phone_is_named_with_file_and_line(tmp_path: Path):
    source = write_timit(tmp_path)
    phn = source / "TIMIT/TRAIN/DR2/MARC0/SX108.PHN"
    phn.write_text(phn.read_text().replace(" epi\n", " ep\n"))
    assert f"{phn.resolve()}:5: unknown TIMIT phone 'ep'" in _error(source, tmp_path)


def test_missing_phn_is_named_unless_the_sentence_is_dropped(tmp_path: Path):
    source = write_timit(tmp_path)
    (source / "TIMIT/TRAIN/DR1/FCJF0/SA1.PHN").unlink()  # SA: dropped, so not needed
    (source / "TIMIT/TEST/DR3/MZZZ0/SI100.PHN").unlink()  # a speaker outside the split
    prepare_timit(source, tmp_path / "ok", allow_partial=True)
    wav = source / "TIMIT/TEST/DR1/MDAB0/SI1039.WAV"
    wav.with_suffix(".PHN").unlink()
    assert f"{wav.resolve()}: no .PHN transcription beside it" in _error(source, tmp_path)


def test_phn_without_audio_and_unreadable_audio_are_named(tmp_path: Path):
    source = write_timit(tmp_path)
    wav = source / "TIMIT/TRAIN/DR1/FCJF0/SX37.WAV"
    wav.unlink()
    bad = source / "TIMIT/TEST/DR1/FAKS0/SI943.WAV"
    bad.write_bytes(b"NIST_1A\n   1024\nnot really")
    message = _error(source, tmp_path)
    assert message.startswith("2 problem(s) in ")
    assert f"{wav.resolve().with_suffix('.PHN')}: no audio file beside it (sx37.WAV)" in message
    assert f"{bad.resolve()}: cannot read audio header" in message


def test_not_a_timit_folder(tmp_path: Path):
    (tmp_path / "TRAIN").mkdir()
    with pytest.raises(TimitError, match=rf"{tmp_path}: no TRAIN/ and TEST/ folders"):
        prepare_timit(tmp_path, tmp_path / "out")


def test_registry_and_command_line(tmp_path: Path, capsys):
    spec = load_dataset("timit")
    assert spec is timit.DATASET and spec.download is None
    with pytest.raises(DatasetError, match="timit cannot be downloaded here: give --source"):
        prepare_dataset(spec, tmp_path / "out", download_dir=tmp_path / "dl")
    source = write_timit(tmp_path)
    out = tmp_path / "manifests"
    args = ["prepare", "timit", "--source", str(source), "--out-dir", str(out)]
    assert main([*args, "--phones", "48", "--allow-partial"]) == 0
    assert f"test: {out / 'test.jsonl'}" in capsys.readouterr().out
    assert read_manifest(out / "train.jsonl")[0].text == EXPECTED_48["si1027"]
    assert main(args) == 1  # the fixture is not the whole corpus
    err = capsys.readouterr().err
    assert "incomplete TIMIT copy (--allow-partial prepares what there is)" in err


# A tiny model for the recipe's stages on the fixture: what runs is checked, not how well.
TINY = [
    "model.rnn_type=gru", "model.num_layers=1", "model.hidden_size=32", "model.conv_channels=8",
    "features.n_mels=24", "train.epochs=3", "train.lr=1e-2", "train.warmup_steps=2",
    "train.wave_augment=false", "train.average_last=0", "train.progress=false",
    "data.batch_seconds=3", "data.num_workers=0",
]  # fmt: skip


@pytest.mark.slow
def test_recipe_runs_every_stage_on_the_fixture(tmp_path: Path):
    source = write_timit(tmp_path)
    exp = tmp_path / "exp"
    env = {**os.environ, "ASR": f"{sys.executable} -m asr.cli", "OMP_NUM_THREADS": "1"}
    cmd = ["bash", str(ROOT / "recipes/timit/run.sh"), "--source", str(source)]
    cmd += ["--exp-dir", str(exp), "--allow-partial", "--", *TINY]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    for stage in range(5):
        assert f"== stage {stage}: " in run.stdout
    results = json.loads((exp / "results.json").read_text())
    assert results["training"]["runs"] == 1
    sizes = {"dev": len(SPLITS["dev"]), "test": len(SPLITS["test"]), "test-lm": 6}
    for name, count in sizes.items():
        assert results[name]["utterances"] == count and results[name]["failed"] == 0
        assert (exp / f"errs-{name}.txt").is_file()
    assert json.loads((exp / "lm/lm.json").read_text())["order"] == 2
    phones = set(timit.phone_inventory(39))
    tokenizer = load_checkpoint(exp / "best.pt")["tokenizer"]  # config.yaml: data.units phone
    assert tokenizer["type"] == "phone" and set(tokenizer["units"]) <= phones
    lines = [line.split("\t") for line in run.stdout.splitlines() if "\t" in line]
    assert [Path(f).stem.lower() for f, _ in lines] == SPLITS["test"][:2]
    assert all(set(text.split()) <= phones for _, text in lines)
    # A model trained on 48 phones: the 39-class PER after folding both sides.
    score_folded = _load_score_folded()
    manifest = prepare_timit(source, tmp_path / "d48", phones=48, allow_partial=True)["test"]
    args = ["--model", str(exp / "best.pt"), "--manifest", str(manifest), "--name", "t39"]
    assert score_folded.main([*args, "--out-dir", str(tmp_path)]) == 0
    report = (tmp_path / "errs-t39.txt").read_text()
    assert "REF: " + EXPECTED_39["si1039"] in report  # the 48-phone reference, folded


def _load_score_folded():
    import importlib.util

    path = ROOT / "recipes/timit/score_folded.py"
    spec = importlib.util.spec_from_file_location("score_folded", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_folded_scoring_counts_only_errors_between_classes():
    """score_folded.py: a 48-phone hypothesis that differs from the reference only inside
    the 39 classes (ix/ih, vcl/sil, zh/sh) has no errors once both are folded."""
    from asr.metrics import score_corpus, score_utterance

    reference, hypothesis = "sil ix zh vcl b ax sil", "sil ih sh sil b ax epi"
    raw = score_utterance("a.wav", reference, hypothesis)
    assert raw.word_errors == 4
    (folded,) = _load_score_folded().fold_scores([raw])
    assert (folded.word_errors, folded.words) == (0, 7)
    (worse,) = _load_score_folded().fold_scores([score_utterance("a.wav", reference, "sil b")])
    assert score_corpus([worse]).wer == pytest.approx(5 / 7)
