"""Common Voice: prepare on copies generated in a release's layout (TSV columns of three
release generations, mp3 clips at 48 kHz written through libsndfile), the text of German,
Turkish and Hindi, every kind of bad row, and the whole recipe on a tone corpus (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.cli import main
from asr.data import read_manifest
from asr.text import normalize_text
from data_prep import commonvoice
from data_prep.commonvoice import CommonVoiceError, prepare_commonvoice, prepare_text
from tests.conftest import ROOT, tiny_recipe_model, tone_utterance

RATE = 48_000
RELEASE = "cv-corpus-21.0-2025-03-14"
# The header rows of three generations of releases (columns read by name).
HEADERS = {
    "v11": "client_id path sentence up_votes down_votes age gender accents locale segment",
    "v13": "client_id path sentence up_votes down_votes age gender accents variant locale segment",
    "v17": "client_id path sentence_id sentence sentence_domain up_votes down_votes age gender "
    "accents variant locale segment",
}
# (speaker, sentence as published, what the manifest must hold), per language and split.
SENTENCES = {
    "tr": {
        "train": [
            ("s1", "IŞIK ılık, İzmir'de!", "ışık ılık izmir'de"),
            ("s1", "Işıklı İstanbul’a gidiyoruz.", "ışıklı istanbul'a gidiyoruz"),
            ("s2", "KIRMIZI İNCİR", "kırmızı incir"),
            ("s3", 'Bu "ilk" cümle; 2 kez.', "bu ilk cümle 2 kez"),
        ],
        "dev": [("s4", "İyi günler, ISPARTA.", "iyi günler ısparta")],
        "test": [("s5", "Sıcak çay içtik.", "sıcak çay içtik"), ("s5", "ÇIĞ", "çığ")],
    },
    "de": {
        "train": [
            ("s1", "Die STRAẞE ist groß.", "die straße ist groß"),
            ("s2", "„Grüße aus Köln“, sagte sie.", "grüße aus köln sagte sie"),
        ],
        "dev": [("s3", "Fußball – ÄRGER über Öl?", "fußball ärger über öl")],
        "test": [("s4", "Maß und Muße", "maß und muße")],
    },
    "hi": {
        "train": [("s1", "हिन्दी एक भाषा है।", "हिन्दी एक भाषा है")],
        "dev": [("s2", "नमस्ते, दुनिया!", "नमस्ते दुनिया")],
        "test": [("s3", "क्षत्रिय", "क्षत्रिय")],
    },
}


def clip_name(language: str, number: int) -> str:
    return f"common_voice_{language}_{40_000_000 + number}.mp3"


def clip_seconds(number: int) -> float:
    return 0.5 + 0.1 * number  # lengths tell the clips apart


def write_tsv(path: Path, header: str, rows: list[dict[str, str]]) -> None:
    columns = header.split()
    lines = ["\t".join(columns)]
    lines += ["\t".join(row.get(c, "") for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_cv_copy(root: Path, language: str = "tr", header: str = HEADERS["v17"]) -> Path:
    """`root/<release>/<language>/` with train/dev/test/validated/invalidated/other.tsv and an
    mp3 in clips/ for every row, as a release unpacks; returns the language folder."""
    folder = root / RELEASE / language
    (folder / "clips").mkdir(parents=True)
    rng = np.random.default_rng(0)
    number, tsv_rows = 0, {}
    for split, sentences in SENTENCES[language].items():
        tsv_rows[split] = []
        for speaker, sentence, _ in sentences:
            n = int(clip_seconds(number) * RATE)
            samples = 0.1 * np.sin(2 * np.pi * 300 * np.arange(n) / RATE)
            samples += 0.01 * rng.standard_normal(n)
            name = clip_name(language, number)
            sf.write(folder / "clips" / name, samples, RATE, format="MP3")
            tsv_rows[split].append(
                {
                    "client_id": f"{speaker:a>64}",  # a sha512-like hash in real releases
                    "path": name,
                    "sentence_id": f"{number:064x}",
                    "sentence": sentence,
                    "sentence_domain": "",
                    "up_votes": "2",
                    "down_votes": "0",
                    "age": "twenties",
                    "gender": "male_masculine",
                    "locale": language,
                }
            )
            number += 1
    for split, rows in tsv_rows.items():
        write_tsv(folder / f"{split}.tsv", header, rows)
    write_tsv(folder / "validated.tsv", header, [r for rows in tsv_rows.values() for r in rows])
    write_tsv(folder / "invalidated.tsv", header, [])
    write_tsv(folder / "other.tsv", header, [])
    return folder


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def tr_copy(tmp_path: Path) -> Path:
    return make_cv_copy(tmp_path / "corpus", "tr")


@pytest.mark.parametrize("language", ["tr", "de", "hi"])
def test_prepare_field_by_field(language: str, tmp_path: Path):
    folder = make_cv_copy(tmp_path / "corpus", language)
    manifests = prepare_commonvoice(folder, tmp_path / "out")
    assert manifests == {s: tmp_path / "out" / f"{s}.jsonl" for s in ("train", "dev", "test")}
    number = 0
    for split, sentences in SENTENCES[language].items():
        rows = rows_of(manifests[split])
        assert len(rows) == len(sentences)
        for row, (_, _, text) in zip(rows, sentences, strict=True):
            assert set(row) == {"audio_filepath", "duration", "text"}
            assert row["audio_filepath"] == str(
                folder.resolve() / "clips" / clip_name(language, number)
            )
            assert row["text"] == text
            assert normalize_text(row["text"]) == row["text"]  # training leaves it as it is
            # mp3 header: libsndfile reads the LAME/Info frame's length
            assert row["duration"] == pytest.approx(clip_seconds(number), abs=0.03)
            number += 1
        assert len(read_manifest(manifests[split])) == len(sentences)


def test_turkish_german_and_devanagari_text():
    assert prepare_text("İSTANBUL IŞIKLARI", "tr") == "istanbul ışıkları"
    assert prepare_text("İSTANBUL IŞIKLARI", "az") == "istanbul ışıkları"
    # Python's rule elsewhere: I -> i, İ -> i + combining dot above (kept: a mark on a letter)
    assert prepare_text("İSTANBUL IŞIKLARI", "en") == "i\u0307stanbul işiklari"
    assert prepare_text("GROẞE STRAẞE", "de") == "große straße"  # not "grosse strasse"
    assert prepare_text("ΟΔΟΣ ΣΟΦΙΑΣ", "el") == "οδο\u03c2 σοφια\u03c2"  # final sigma
    text = prepare_text("हिन्दी, भाषा।", "hi")
    assert text == "हिन्दी भाषा" and "\u093f" in text and "\u094d" in text  # vowel sign, virama
    assert prepare_text("می\u200cخواهم.", "fa") == "می\u200cخواهم"  # zero-width non-joiner kept
    assert prepare_text("“Hello”, she said — twice.", "en") == "hello she said twice"


@pytest.mark.parametrize("generation", sorted(HEADERS))
def test_every_header_generation_gives_the_same_manifests(generation: str, tmp_path: Path):
    reference = make_cv_copy(tmp_path / "reference", "tr", HEADERS["v17"])
    expected = {s: p.read_text() for s, p in prepare_commonvoice(reference, tmp_path / "a").items()}
    folder = make_cv_copy(tmp_path / generation, "tr", HEADERS[generation])
    got = prepare_commonvoice(folder, tmp_path / "b")
    assert {
        s: p.read_text().replace(str(folder.resolve()), str(reference.resolve()))
        for s, p in got.items()
    } == expected


def test_release_folder_with_language(tr_copy: Path, tmp_path: Path):
    release = tr_copy.parent
    a = prepare_commonvoice(tr_copy, tmp_path / "a")["train"].read_text()
    assert prepare_commonvoice(release, tmp_path / "b", language="tr")["train"].read_text() == a
    with pytest.raises(CommonVoiceError, match=r"add --language with one of: tr$"):
        prepare_commonvoice(release, tmp_path / "c")
    with pytest.raises(CommonVoiceError, match=r"no de/ folder .*languages found: tr"):
        prepare_commonvoice(release, tmp_path / "c", language="de")


def test_language_option_sets_the_casing_rules(tmp_path: Path):
    folder = make_cv_copy(tmp_path / "corpus", "tr")
    renamed = folder.rename(folder.parent / "turkish")
    rows = rows_of(prepare_commonvoice(renamed, tmp_path / "a", language="tr")["train"])
    assert rows[2]["text"] == "kırmızı incir"
    rows = rows_of(prepare_commonvoice(renamed, tmp_path / "b")["train"])  # "turkish": default
    assert rows[2]["text"] == "kirmizi i\u0307nci\u0307r"


def _error(folder: Path, tmp_path: Path, **options) -> str:
    with pytest.raises(CommonVoiceError) as err:
        prepare_commonvoice(folder, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()  # nothing written from a bad copy
    return str(err.value)


def _edit_line(path: Path, number: int, edit) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[number - 1] = edit(lines[number - 1])
    path.write_text("\n".join(lines), encoding="utf-8")


def test_row_with_a_missing_field_is_named_with_file_and_line(tr_copy: Path, tmp_path: Path):
    _edit_line(tr_copy / "train.tsv", 3, lambda line: line.rsplit("\t", 1)[0])
    message = _error(tr_copy, tmp_path)
    assert message.splitlines() == [
        f"1 malformed row(s) in {tr_copy.resolve() / 'train.tsv'}:",
        f"{tr_copy.resolve() / 'train.tsv'}:3: 12 tab-separated fields, the header has 13",
    ]


def test_empty_sentence_and_repeated_clip_are_named(tr_copy: Path, tmp_path: Path):
    tsv = tr_copy / "train.tsv"
    _edit_line(tsv, 2, lambda line: line.replace("IŞIK ılık, İzmir'de!", " "))
    _edit_line(tsv, 5, lambda line: line.replace(clip_name("tr", 3), clip_name("tr", 1)))
    message = _error(tr_copy, tmp_path)
    where = tr_copy.resolve() / "train.tsv"
    assert message.splitlines() == [
        f"2 malformed row(s) in {where}:",
        f"{where}:2: empty sentence",
        f"{where}:5: clip {clip_name('tr', 1)} listed twice (first at line 3)",
    ]


def test_header_without_the_columns_is_named(tr_copy: Path, tmp_path: Path):
    _edit_line(tr_copy / "dev.tsv", 1, lambda line: line.replace("sentence\t", "text\t", 1))
    message = _error(tr_copy, tmp_path)
    assert message.startswith(f"{tr_copy.resolve() / 'dev.tsv'}:1: header has no column sentence")


def test_missing_clips_are_an_incomplete_copy(tr_copy: Path, tmp_path: Path):
    (tr_copy / "clips" / clip_name("tr", 1)).unlink()
    (tr_copy / "clips" / clip_name("tr", 6)).unlink()
    message = _error(tr_copy, tmp_path)
    clips = tr_copy.resolve() / "clips"
    assert message.splitlines() == [
        f"2 of 7 clip(s) missing or unreadable in {clips} (2 missing: an incomplete copy?):",
        f"{tr_copy.resolve() / 'train.tsv'}:3: no clip {clips / clip_name('tr', 1)}",
        f"{tr_copy.resolve() / 'test.tsv'}:3: no clip {clips / clip_name('tr', 6)}",
    ]


def test_unreadable_clip_is_named(tr_copy: Path, tmp_path: Path):
    (tr_copy / "clips" / clip_name("tr", 4)).write_bytes(b"not audio")
    message = _error(tr_copy, tmp_path)
    assert f"{tr_copy.resolve() / 'dev.tsv'}:2: " in message
    assert "cannot read audio header" in message


def test_variable_bit_rate_mp3_without_length_header_is_named(tr_copy: Path, tmp_path: Path):
    """libsndfile writes variable-bit-rate mp3 with a Xing header as its first frame; without
    it libsndfile guesses the length from the first frame's bit rate and reads no further."""
    clip = tr_copy / "clips" / clip_name("tr", 2)
    data = clip.read_bytes()
    assert data[:2] == b"\xff\xfb" and data.find(b"Xing") < 64  # MPEG-1 Layer III, tagged
    kbps = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)[data[2] >> 4]
    first_frame = 144_000 * kbps // RATE + (data[2] >> 1 & 1)
    clip.write_bytes(data[first_frame:])  # the audio frames alone
    assert commonvoice.mp3_without_length(clip.read_bytes()[:8192])
    message = _error(tr_copy, tmp_path)
    assert message.splitlines()[1].startswith(
        f"{tr_copy.resolve() / 'train.tsv'}:4: {clip.resolve()}: variable-bit-rate mp3 "
        "without a Xing/Info header: libsndfile would read only the "
    )
    assert not any(
        commonvoice.mp3_without_length(p.read_bytes()[:8192])
        for p in (tr_copy / "clips").iterdir()
        if p != clip
    )


def test_sentence_without_letters_is_skipped_and_named(tr_copy: Path, tmp_path: Path, capsys):
    _edit_line(tr_copy / "train.tsv", 5, lambda line: line.replace('Bu "ilk" cümle; 2 kez.', "…!"))
    rows = rows_of(prepare_commonvoice(tr_copy, tmp_path / "out")["train"])
    assert [r["text"] for r in rows] == [
        "ışık ılık izmir'de",
        "ışıklı istanbul'a gidiyoruz",
        "kırmızı incir",
    ]
    err = capsys.readouterr().err
    assert f"{tr_copy.resolve() / 'train.tsv'}:5: no letter or digit in '…!'" in err


def test_validated_training_set_keeps_dev_and_test_speakers_out(tr_copy: Path, tmp_path: Path):
    header = HEADERS["v17"].split()
    extra = {c: "" for c in header} | {"sentence": "Yeni bir cümle.", "locale": "tr"}
    # Two more validated clips: one by a new speaker, one by a test speaker (s5).
    lines = (tr_copy / "validated.tsv").read_text(encoding="utf-8").rstrip("\n").split("\n")
    for number, speaker in ((7, "s6"), (8, "s5")):
        sf.write(tr_copy / "clips" / clip_name("tr", number), np.zeros(RATE), RATE, format="MP3")
        row = extra | {"client_id": f"{speaker:a>64}", "path": clip_name("tr", number)}
        lines.append("\t".join(row[c] for c in header))
    (tr_copy / "validated.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    manifests = prepare_commonvoice(tr_copy, tmp_path / "out", train_set="validated")
    train = [Path(r["audio_filepath"]).name for r in rows_of(manifests["train"])]
    assert train == [clip_name("tr", n) for n in (0, 1, 2, 3, 7)]  # not 4-6 (dev, test) nor 8
    assert len(rows_of(manifests["test"])) == 2 and len(rows_of(manifests["dev"])) == 1


def test_asr_prepare_commonvoice(tr_copy: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert main(["prepare", "commonvoice", "--source", str(tr_copy), "--out-dir", str(out)]) == 0
    assert capsys.readouterr().out.split() == [
        "train:",
        str(out / "train.jsonl"),
        "dev:",
        str(out / "dev.jsonl"),
        "test:",
        str(out / "test.jsonl"),
    ]
    assert (
        main(["prepare", "commonvoice", "--download-dir", str(tmp_path), "--out-dir", str(out)])
        == 1
    )
    err = capsys.readouterr().err
    assert "commonvoice cannot be downloaded here" in err
    assert "https://commonvoice.mozilla.org/datasets" in err


def test_dataset_record():
    spec = commonvoice.DATASET
    assert spec.name == "commonvoice" and spec.download is None and spec.takes_source
    assert [o.flag for o in spec.options] == ["--language", "--train-set"]


# The slow test: a tone "language" (conftest) read by a few "speakers", as a Common Voice copy.
TONE_TEXTS = ["ABC.", "Cab!", "ba", "ca?", "BC", "a b", "cc", "aab", "acb", "b", "bca", "c a"]


def make_tone_cv_copy(root: Path) -> Path:
    folder = root / RELEASE / "xx"
    (folder / "clips").mkdir(parents=True)
    rng = np.random.default_rng(0)
    header = HEADERS["v17"]
    rows: dict[str, list[dict[str, str]]] = {"train": [], "dev": [], "test": []}
    number = 0
    for repeat in range(4):
        for i, text in enumerate(TONE_TEXTS):
            name = clip_name("xx", number)
            wav = tone_utterance(normalize_text(text), RATE, rng)
            sf.write(folder / "clips" / name, wav, RATE, format="MP3")
            split = "test" if repeat == 3 and i < 4 else "dev" if repeat == 3 else "train"
            rows[split].append(
                {"client_id": f"speaker{repeat}", "path": name, "sentence": text, "locale": "xx"}
            )
            number += 1
    for split, split_rows in rows.items():
        write_tsv(folder / f"{split}.tsv", header, split_rows)
    write_tsv(folder / "validated.tsv", header, [r for rs in rows.values() for r in rs])
    return folder


@pytest.mark.slow
def test_recipe_runs_every_stage_on_a_tone_corpus(tmp_path: Path):
    folder = make_tone_cv_copy(tmp_path / "corpus")
    exp = tmp_path / "exp"
    env = {**os.environ, "ASR": f"{sys.executable} -m asr.cli", "OMP_NUM_THREADS": "1"}
    cmd = ["bash", str(ROOT / "recipes/commonvoice/run.sh"), "--source", str(folder)]
    cmd += ["--exp-dir", str(exp), "--", *tiny_recipe_model(epochs=20)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    results = json.loads((exp / "results.json").read_text())
    assert results["training"]["runs"] == 1
    for name, count in (("dev", 8), ("test", 4), ("test-lm", 4)):
        assert results[name]["utterances"] == count and results[name]["failed"] == 0
    assert results["test"]["cer"] < 0.5, results  # the tones are learnt, roughly
    lines = [line.split("\t") for line in run.stdout.splitlines() if "\t" in line]
    assert [Path(f).name for f, _ in lines] == [clip_name("xx", n) for n in (36, 37)]
