"""Importers of a user's own data (data_prep/folder.py, csv_table.py, kaldi.py, split.py): each
layout generated here, prepared and checked field by field; the speaker split; every bad entry
named by file and line while the good ones are still written; the refusal of Kaldi pipes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import AudioError, check_samples
from asr.cli import main
from asr.data import read_manifest
from data_prep.csv_table import prepare_csv_table
from data_prep.folder import prepare_folder
from data_prep.kaldi import prepare_kaldi
from data_prep.split import ImporterError, SkippedEntries

RATE = 8000
NO_SPLIT = {"dev_fraction": 0.0, "test_fraction": 0.0}  # everything in train.jsonl


def write_audio(path: Path, seconds: float, seed: int = 0) -> Path:
    """A mono 16-bit file of noise, `seconds` long at 8 kHz (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = 0.1 * np.random.default_rng(seed).standard_normal(round(seconds * RATE))
    sf.write(path, samples, RATE, subtype="PCM_16", format=path.suffix[1:].upper())
    return path


def write_non_finite(path: Path, seconds: float, at: float, value: float) -> Path:
    """A float file of noise, `seconds` long at 8 kHz, with one `value` (NaN, inf) at `at` s:
    its header is fine, only reading the samples shows it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = 0.1 * np.random.default_rng(0).standard_normal(round(seconds * RATE))
    samples[round(at * RATE)] = value
    sf.write(path, samples.astype(np.float32), RATE, subtype="FLOAT")
    return path


NON_FINITE = "audio contains NaN or infinite samples at"  # load_audio's cause, and the time


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def manifest_rows(manifests: dict[str, Path]) -> dict[str, list[dict]]:
    return {name: rows(path) for name, path in manifests.items()}


def skipped(excinfo: pytest.ExceptionInfo) -> list[str]:
    """The problem lines of a SkippedEntries, checked to be one line each."""
    assert all("\n" not in p for p in excinfo.value.problems)
    return excinfo.value.problems


# --- folder ------------------------------------------------------------------------------


def test_folder_with_sidecars_field_by_field(tmp_path: Path):
    src = tmp_path / "recordings"
    write_audio(src / "a.wav", 0.5)
    (src / "a.txt").write_text("Hello,  world!\n", encoding="utf-8")
    write_audio(src / "talks" / "b.flac", 0.75)
    (src / "talks" / "b.txt").write_text("second\nline  two\n", encoding="utf-8")
    write_audio(src / "talks" / "day2" / "c.WAV", 1.25)
    (src / "talks" / "day2" / "c.txt").write_text("\ufeffçà va\n", encoding="utf-8")  # BOM

    manifests = prepare_folder(src, tmp_path / "out", **NO_SPLIT)

    assert manifests == {"train": tmp_path / "out" / "train.jsonl"}
    assert not (tmp_path / "out" / "dev.jsonl").exists()  # a fraction of 0: no manifest
    assert rows(manifests["train"]) == [
        {"audio_filepath": str(src / "a.wav"), "duration": 0.5, "text": "Hello, world!"},
        {"audio_filepath": str(src / "talks/b.flac"), "duration": 0.75, "text": "second line two"},
        {"audio_filepath": str(src / "talks/day2/c.WAV"), "duration": 1.25, "text": "çà va"},
    ]


def test_folder_split_by_utterance_counts_and_seed(tmp_path: Path):
    src = tmp_path / "recordings"
    for i in range(20):
        write_audio(src / f"u{i:02d}.wav", 0.1 + i / 100)
        (src / f"u{i:02d}.txt").write_text(f"word {i}")

    a = manifest_rows(prepare_folder(src, tmp_path / "a", dev_fraction=0.2, test_fraction=0.1))
    assert {name: len(r) for name, r in a.items()} == {"train": 14, "dev": 4, "test": 2}
    names = {n: [Path(r["audio_filepath"]).name for r in a[n]] for n in a}
    every = sorted(name for part in names.values() for name in part)
    assert every == [f"u{i:02d}.wav" for i in range(20)]
    assert all(names[n] == sorted(names[n]) for n in names)  # each keeps the input order
    for row in a["dev"] + a["test"]:  # text and duration travel with their file
        i = int(Path(row["audio_filepath"]).stem[1:])
        assert row["text"] == f"word {i}" and row["duration"] == pytest.approx(0.1 + i / 100)
    again = manifest_rows(prepare_folder(src, tmp_path / "b", dev_fraction=0.2, test_fraction=0.1))
    assert again == a  # the same seed, the same split
    other = manifest_rows(
        prepare_folder(src, tmp_path / "c", dev_fraction=0.2, test_fraction=0.1, seed=1)
    )
    assert other["test"] != a["test"]


def test_folder_with_one_transcript_file(tmp_path: Path):
    src = tmp_path / "recordings"
    write_audio(src / "spk1" / "x.wav", 0.5)
    write_audio(src / "spk2" / "y.flac", 0.625)
    write_audio(src / "z.wav", 0.25)
    write_audio(src / "spk2" / "z2.wav", 0.375)
    (src / "all.tsv").write_text(
        "spk1/x.wav\tone two\n"  # path with suffix
        "\n"  # blank lines are skipped
        "spk2/y\t  three  \n"  # path without suffix
        "z.wav\tfour\n"  # file name
        "z2\tfive six\n",  # stem, unique in the tree
        encoding="utf-8",
    )

    manifests = prepare_folder(src, tmp_path / "out", transcripts="all.tsv", **NO_SPLIT)

    assert rows(manifests["train"]) == [
        {"audio_filepath": str(src / "spk1/x.wav"), "duration": 0.5, "text": "one two"},
        {"audio_filepath": str(src / "spk2/y.flac"), "duration": 0.625, "text": "three"},
        {"audio_filepath": str(src / "spk2/z2.wav"), "duration": 0.375, "text": "five six"},
        {"audio_filepath": str(src / "z.wav"), "duration": 0.25, "text": "four"},
    ]


def test_folder_speaker_folders_keep_each_speaker_on_one_side(tmp_path: Path):
    src = tmp_path / "recordings"
    speakers = ["alice", "bob", "carol", "dave", "erin", "frank", "gina", "hugo", "ines", "jan"]
    for s, speaker in enumerate(speakers):
        for i in range(3 + s % 2):
            path = write_audio(src / speaker / "session" / f"{i}.wav", 0.2, seed=i)
            path.with_suffix(".txt").write_text(f"{speaker} {i}")

    parts = manifest_rows(
        prepare_folder(
            src, tmp_path / "out", speaker_folders=True, dev_fraction=0.2, test_fraction=0.1
        )
    )

    who = {
        n: {Path(r["audio_filepath"]).relative_to(src).parts[0] for r in parts[n]} for n in parts
    }
    assert [len(who[n]) for n in ("train", "dev", "test")] == [7, 2, 1]
    assert who["train"] | who["dev"] | who["test"] == set(speakers)
    assert not who["train"] & who["dev"] and not who["train"] & who["test"]
    for name, part in parts.items():  # every utterance of a speaker goes with the speaker
        assert len(part) == sum(3 + speakers.index(s) % 2 for s in who[name])
        assert all(r["text"].split()[0] in who[name] for r in part)


def test_speaker_split_reports_speakers_per_set(tmp_path: Path, capsys: pytest.CaptureFixture):
    src = tmp_path / "recordings"
    for speaker in ("alice", "bob", "carol", "dave"):
        for i in range(2):
            write_audio(src / speaker / f"{i}.wav", 0.5, seed=i).with_suffix(".txt").write_text("a")
    out = tmp_path / "out"
    argv = ["prepare", "folder", str(src), "--speaker-folders", "--out-dir", str(out)]

    assert main([*argv, "--dev-fraction", "0.25", "--test-fraction", "0.25"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "asr: prepared 8 utterances (4.0 s): 4 train (2 speakers, 2.0 s), "
        "2 dev (1 speaker, 1.0 s), 2 test (1 speaker, 1.0 s)"
    ]


def test_folder_reports_every_bad_file_and_writes_the_good_ones(tmp_path: Path):
    src = tmp_path / "recordings"
    for name in ("good1", "good2"):
        write_audio(src / f"{name}.wav", 0.5)
        (src / f"{name}.txt").write_text(name)
    write_audio(src / "notext.wav", 0.5)
    write_audio(src / "empty.wav", 0.5)
    (src / "empty.txt").write_text("  \n")
    (src / "broken.wav").write_bytes(b"RIFF not really")
    (src / "broken.txt").write_text("broken")
    (src / "orphan.txt").write_text("no audio")
    write_audio(src / "twin.wav", 0.5)
    write_audio(src / "twin.flac", 0.5)
    (src / "twin.txt").write_text("which one")

    with pytest.raises(SkippedEntries) as excinfo:
        prepare_folder(src, tmp_path / "out", **NO_SPLIT)

    problems = skipped(excinfo)
    assert len(problems) == 5
    expected = {
        "broken.wav": "cannot read audio header",
        "notext.wav": "no transcript notext.txt",
        "empty.txt": "empty transcript",
        "orphan.txt": "no audio file",
        "twin.txt": "several audio files",
    }
    for name, cause in expected.items():
        assert sum(p.startswith(f"{src / name}: ") and cause in p for p in problems) == 1, name
    assert "5 entries skipped" in str(excinfo.value) and "2 good utterances" in str(excinfo.value)
    assert [r["text"] for r in rows(tmp_path / "out" / "train.jsonl")] == ["good1", "good2"]


def test_folder_reads_every_sample_and_names_nan_and_inf_files(tmp_path: Path):
    src = tmp_path / "recordings"
    write_audio(src / "good.wav", 0.5).with_suffix(".txt").write_text("good")
    write_non_finite(src / "nan.wav", 0.5, 0.25, np.nan).with_suffix(".txt").write_text("x")
    write_non_finite(src / "inf.wav", 0.5, 0.375, -np.inf).with_suffix(".txt").write_text("y")

    with pytest.raises(SkippedEntries) as excinfo:
        prepare_folder(src, tmp_path / "out", **NO_SPLIT)

    assert skipped(excinfo) == [
        f"{src / 'inf.wav'}: {NON_FINITE} 0.38 s",
        f"{src / 'nan.wav'}: {NON_FINITE} 0.25 s",
    ]
    assert [r["text"] for r in rows(tmp_path / "out" / "train.jsonl")] == ["good"]


def test_check_samples_finds_a_bad_sample_in_a_later_block(tmp_path: Path):
    path = write_non_finite(tmp_path / "a.wav", 1.0, 0.7, np.inf)
    with pytest.raises(AudioError, match=f"{NON_FINITE} 0.70 s"):
        check_samples(path, block_seconds=0.25)  # the fourth block of 0.25 s holds it
    check_samples(write_audio(tmp_path / "b.flac", 1.0), block_seconds=0.25)  # no error


def test_folder_transcript_file_problems_name_file_and_line(tmp_path: Path):
    src = tmp_path / "recordings"
    for name in ("a", "b", "c"):
        write_audio(src / f"{name}.wav", 0.5)
    write_audio(src / "x" / "d.wav", 0.5)
    write_audio(src / "y" / "d.wav", 0.5)
    table = tmp_path / "list.txt"
    table.write_text(
        "a.wav\tfirst\n"
        "b.wav has no tab\n"
        "missing.wav\tnothing\n"
        "\tno name\n"
        "a\tagain\n"
        "d\tambiguous\n"
        "x/d\tfine\n"
        "c.wav\t \n",
        encoding="utf-8",
    )

    with pytest.raises(SkippedEntries) as excinfo:
        prepare_folder(src, tmp_path / "out", transcripts=str(table), **NO_SPLIT)

    problems = skipped(excinfo)
    for line, cause in [
        (2, "no tab"),
        (3, "no audio file 'missing.wav'"),
        (4, "empty name"),
        (5, "already given on line 1"),
        (6, "names several files"),
        (8, "empty text"),
    ]:
        assert sum(p.startswith(f"{table}:{line}: ") and cause in p for p in problems) == 1, line
    # files no line gave text to: reported too
    assert f"{src / 'b.wav'}: audio file with no line in {table}" in problems
    assert f"{src / 'c.wav'}: audio file with no line in {table}" in problems
    assert f"{src / 'y/d.wav'}: audio file with no line in {table}" in problems
    assert len(problems) == 9
    assert [r["text"] for r in rows(tmp_path / "out" / "train.jsonl")] == ["first", "fine"]


def test_folder_file_outside_speaker_folders_is_reported(tmp_path: Path):
    src = tmp_path / "recordings"
    for i, path in enumerate(["s1/a.wav", "s2/b.wav", "loose.wav"]):
        write_audio(src / path, 0.5).with_suffix(".txt").write_text(f"t{i}")
    with pytest.raises(SkippedEntries) as excinfo:
        prepare_folder(src, tmp_path / "out", speaker_folders=True, **NO_SPLIT)
    assert skipped(excinfo) == [f"{src / 'loose.wav'}: not in a speaker folder (--speaker-folders)"]


# --- split rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ({"dev_fraction": 1.0}, "--dev-fraction 1.0: must be at least 0 and below 1"),
        ({"test_fraction": -0.1}, "--test-fraction -0.1: must be at least 0 and below 1"),
        ({"dev_fraction": 0.5, "test_fraction": 0.5}, "their sum must be below 1"),
    ],
)
def test_fraction_out_of_range_is_an_error(tmp_path: Path, fractions: dict, message: str):
    with pytest.raises(ImporterError, match=message):
        prepare_folder(tmp_path, tmp_path / "out", **fractions)


def test_split_that_leaves_train_empty_is_an_error_and_writes_nothing(tmp_path: Path):
    src = tmp_path / "recordings"
    for speaker in ("s1", "s2"):
        write_audio(src / speaker / "a.wav", 0.5).with_suffix(".txt").write_text("hi")
    with pytest.raises(ImporterError, match="2 speakers: dev takes 1 and test 1, leaving none"):
        prepare_folder(src, tmp_path / "out", speaker_folders=True)
    assert not (tmp_path / "out").exists()


def test_split_of_one_speaker_says_speaker(tmp_path: Path):
    src = tmp_path / "recordings"
    for name in ("a", "b"):
        write_audio(src / "s1" / f"{name}.wav", 0.5).with_suffix(".txt").write_text("hi")
    with pytest.raises(ImporterError) as excinfo:
        prepare_folder(src, tmp_path / "out", speaker_folders=True)
    assert str(excinfo.value) == (
        f"{src}: 1 speaker: dev takes 1 and test 1, leaving none to train on; lower "
        "--dev-fraction / --test-fraction (0 holds out none) or add data"
    )


# --- CSV / TSV ---------------------------------------------------------------------------


def test_csv_field_by_field(tmp_path: Path):
    folder = tmp_path / "data"
    write_audio(folder / "clips" / "one.wav", 0.5)
    write_audio(folder / "clips" / "two.flac", 0.25)
    absolute = write_audio(tmp_path / "elsewhere" / "three.wav", 0.375)
    table = folder / "list.csv"
    table.write_text(
        "\ufeffid,file,sentence,who\n"  # Excel's byte-order mark
        '1,clips/one.wav,"Hello, world",ann\n'
        '2,clips/two.flac,"a ""quoted""\nword",bo\n'  # a quoted field across two lines
        f"3,{absolute},plain,ann\n",
        encoding="utf-8",
    )

    manifests = prepare_csv_table(
        table, tmp_path / "out", path_column="file", text_column="sentence", **NO_SPLIT
    )

    assert rows(manifests["train"]) == [
        {"audio_filepath": str(folder / "clips/one.wav"), "duration": 0.5, "text": "Hello, world"},
        {
            "audio_filepath": str(folder / "clips/two.flac"),
            "duration": 0.25,
            "text": 'a "quoted" word',
        },
        {"audio_filepath": str(absolute), "duration": 0.375, "text": "plain"},
    ]


def common_voice_tsv(folder: Path, speakers: int = 6, per_speaker: int = 3) -> Path:
    """`validated.tsv` in Common Voice's columns (unquoted: a `"` is part of the sentence)."""
    lines = ["client_id\tpath\tsentence\tup_votes"]
    for s in range(speakers):
        for i in range(per_speaker):
            name = f"cv_{s}_{i}.wav"
            write_audio(folder / "clips" / name, 0.1 + i / 10, seed=s)
            lines.append(f'speaker{s}\tclips/{name}\tHe said "hi" {s} {i}\t2')
    table = folder / "validated.tsv"
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return table


def test_tsv_split_by_speaker_column(tmp_path: Path):
    table = common_voice_tsv(tmp_path / "cv")
    parts = manifest_rows(
        prepare_csv_table(
            table,
            tmp_path / "out",
            path_column="path",
            text_column="sentence",
            speaker_column="client_id",
            dev_fraction=0.2,
            test_fraction=0.2,
        )
    )
    assert {n: len(p) for n, p in parts.items()} == {"train": 12, "dev": 3, "test": 3}
    who = {n: {Path(r["audio_filepath"]).stem.split("_")[1] for r in p} for n, p in parts.items()}
    assert [len(who[n]) for n in ("train", "dev", "test")] == [4, 1, 1]
    assert not who["train"] & who["dev"] and not who["train"] & who["test"]
    for row in parts["train"] + parts["dev"] + parts["test"]:
        _, s, i = Path(row["audio_filepath"]).stem.split("_")
        assert row["text"] == f'He said "hi" {s} {i}'
        assert row["duration"] == pytest.approx(0.1 + int(i) / 10)


def test_table_with_another_suffix_is_sniffed(tmp_path: Path):
    write_audio(tmp_path / "a.wav", 0.5)
    write_audio(tmp_path / "b.wav", 0.25)
    table = tmp_path / "list.txt"
    table.write_text("wav;words\na.wav;first one\nb.wav;second one\n", encoding="utf-8")
    manifests = prepare_csv_table(table, tmp_path / "out", "wav", "words", **NO_SPLIT)
    assert [(Path(r["audio_filepath"]).name, r["text"]) for r in rows(manifests["train"])] == [
        ("a.wav", "first one"),
        ("b.wav", "second one"),
    ]


def test_csv_bad_rows_named_by_file_and_line(tmp_path: Path):
    write_audio(tmp_path / "a.wav", 0.5)
    write_audio(tmp_path / "b.wav", 0.5)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    table = tmp_path / "list.csv"
    table.write_text(
        "path,text\n"
        'a.wav,"two\nlines"\n'  # lines 2-3: one good row
        "b.wav,fine,extra\n"  # 4
        "missing.wav,gone\n"  # 5
        "b.wav,\n"  # 6
        "bad.wav,unreadable\n"  # 7
        "a.wav,again\n"  # 8
        "b.wav,kept\n"  # 9
        "lonely.wav\n",  # 10
        encoding="utf-8",
    )

    with pytest.raises(SkippedEntries) as excinfo:
        prepare_csv_table(table, tmp_path / "out", "path", "text", **NO_SPLIT)

    problems = skipped(excinfo)
    assert problems[:3] == [
        f"{table}:4: 3 fields, the header has 2",
        f"{table}:5: no audio file {tmp_path / 'missing.wav'}",
        f"{table}:6: empty 'text'",
    ]
    assert problems[3].startswith(f"{table}:7: {tmp_path / 'bad.wav'}: cannot read audio header")
    assert problems[4:] == [
        f"{table}:8: a.wav already listed on line 2",
        f"{table}:10: 1 field, the header has 2",
    ]
    assert [r["text"] for r in rows(tmp_path / "out" / "train.jsonl")] == ["two lines", "kept"]


def test_csv_names_rows_of_nan_and_inf_files(tmp_path: Path):
    write_audio(tmp_path / "a.wav", 0.5)
    write_non_finite(tmp_path / "nan.wav", 0.5, 0.0, np.nan)
    write_non_finite(tmp_path / "inf.wav", 0.5, 0.5 - 1 / RATE, np.inf)  # the last sample
    table = tmp_path / "list.tsv"
    table.write_text("path\ttext\nnan.wav\tx\na.wav\tkept\ninf.wav\ty\n", encoding="utf-8")

    with pytest.raises(SkippedEntries) as excinfo:
        prepare_csv_table(table, tmp_path / "out", "path", "text", **NO_SPLIT)

    assert skipped(excinfo) == [
        f"{table}:2: {tmp_path / 'nan.wav'}: {NON_FINITE} 0.00 s",
        f"{table}:4: {tmp_path / 'inf.wav'}: {NON_FINITE} 0.50 s",
    ]
    assert [r["text"] for r in rows(tmp_path / "out" / "train.jsonl")] == ["kept"]


def test_csv_unknown_column_names_the_header(tmp_path: Path):
    table = tmp_path / "list.csv"
    table.write_text("path,sentence\n", encoding="utf-8")
    with pytest.raises(ImporterError, match=r"--text-column 'text': no such column; the header"):
        prepare_csv_table(table, tmp_path / "out", "path", "text")


def test_csv_path_and_text_columns_found_by_name(tmp_path: Path, capsys: pytest.CaptureFixture):
    write_audio(tmp_path / "a.wav", 0.5)
    table = tmp_path / "list.csv"
    table.write_text("id,Audio,transcript\n1,a.wav,hello\n", encoding="utf-8")
    out = tmp_path / "out"

    argv = ["prepare", "csv", "--source", str(table), "--out-dir", str(out)]
    assert main([*argv, "--dev-fraction", "0", "--test-fraction", "0"]) == 0
    chose = f"{table}: chose --path-column Audio --text-column transcript from the header"
    assert chose in capsys.readouterr().err.splitlines()
    assert rows(out / "train.jsonl") == [
        {"audio_filepath": str(tmp_path / "a.wav"), "duration": 0.5, "text": "hello"}
    ]
    # a column given by its flag is not printed
    with pytest.raises(ImporterError, match="no usable utterance"):  # "1" is no audio file
        prepare_csv_table(table, out, path_column="id", **NO_SPLIT)
    assert capsys.readouterr().err == (f"{table}: chose --text-column transcript from the header\n")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "path,File,text",
            "columns 'path' and 'File' could both be meant: choose one with --path-column; "
            "the header has 'path', 'File', 'text'",
        ),
        (
            "wav,words",
            "no column named path, audio, audio_filepath or file: name one with --path-column; "
            "the header has 'wav', 'words'",
        ),
        (
            "audio_filepath,words",
            "no column named text, sentence or transcript: name one with --text-column; "
            "the header has 'audio_filepath', 'words'",
        ),
    ],
)
def test_csv_columns_not_found_by_name_list_the_header(tmp_path: Path, header: str, message: str):
    table = tmp_path / "list.csv"
    table.write_text(header + "\nx.wav,hi,there\n", encoding="utf-8")
    with pytest.raises(ImporterError) as excinfo:
        prepare_csv_table(table, tmp_path / "out")
    assert str(excinfo.value) == f"{table}:1: {message}"


def test_csv_rows_not_utf8_are_named_and_the_rest_used(tmp_path: Path):
    for name in ("a", "b", "c"):
        write_audio(tmp_path / f"{name}.wav", 0.5)
    table = tmp_path / "list.csv"
    table.write_bytes(
        b"path,text,note\n"
        b"a.wav,caf\xe9 noir,\n"
        b"b.wav,fine,d\xe9j\xe0 vu\n"  # in a column not used: the row is good
        b"c.wav,also fine,\n"
    )

    with pytest.raises(SkippedEntries) as excinfo:
        prepare_csv_table(table, tmp_path / "out", **NO_SPLIT)

    assert skipped(excinfo) == [
        f"{table}:2: not UTF-8 text (byte 0xE9 at character 4 of column 'text')"
    ]
    assert [r["text"] for r in rows(tmp_path / "out" / "train.jsonl")] == ["fine", "also fine"]


# --- Kaldi data directories --------------------------------------------------------------


def kaldi_recipe(root: Path) -> Path:
    """`root/s5` with `data/train` holding wav.scp (paths relative to s5/, as Kaldi's are),
    text; returns the data dir."""
    s5 = root / "s5"
    data = s5 / "data" / "train"
    data.mkdir(parents=True)
    for i, seconds in enumerate([0.5, 0.75, 0.25]):
        write_audio(s5 / "audio" / f"rec{i}.wav", seconds, seed=i)
    (data / "wav.scp").write_text(
        "".join(f"utt{i} audio/rec{i}.wav\n" for i in range(3)), encoding="utf-8"
    )
    (data / "text").write_text("utt0 HELLO THERE\nutt1 GOOD  MORNING\nutt2 BYE\n", "utf-8")
    return data


def test_kaldi_without_segments_field_by_field(tmp_path: Path):
    data = kaldi_recipe(tmp_path)
    manifests = prepare_kaldi(data, tmp_path / "out", **NO_SPLIT)
    audio = tmp_path / "s5" / "audio"
    assert rows(manifests["train"]) == [
        {"audio_filepath": str(audio / "rec0.wav"), "duration": 0.5, "text": "HELLO THERE"},
        {"audio_filepath": str(audio / "rec1.wav"), "duration": 0.75, "text": "GOOD MORNING"},
        {"audio_filepath": str(audio / "rec2.wav"), "duration": 0.25, "text": "BYE"},
    ]


def kaldi_segmented(root: Path, speaker_file: str = "utt2spk") -> Path:
    """A data dir of two long recordings cut by `segments` into six utterances of three
    speakers, with absolute wav.scp paths."""
    data = root / "data"
    data.mkdir(parents=True)
    long_a = write_audio(root / "wav" / "meeting_a.wav", 4.0, seed=1)
    long_b = write_audio(root / "wav" / "meeting_b.flac", 3.0, seed=2)
    (data / "wav.scp").write_text(f"A {long_a}\nB {long_b}\n", encoding="utf-8")
    segments = [
        ("ann-A-000", "A", 0.0, 1.0),
        ("ann-A-001", "A", 2.5, 4.05),  # 0.05 s past the end: rounded times, cut at the end
        ("bob-A-000", "A", 1.25, 2.5),
        ("bob-B-000", "B", 0.5, 1.5),
        ("cid-B-000", "B", 1.5, -1),  # -1: to the end of the file
        ("cid-B-001", "B", 0.0, 0.5),
    ]
    (data / "segments").write_text(
        "".join(f"{u} {r} {s} {e}\n" for u, r, s, e in segments), encoding="utf-8"
    )
    (data / "text").write_text(
        "".join(f"{u} words of {u}\n" for u, *_ in sorted(segments)), encoding="utf-8"
    )
    spk = {u: u.split("-")[0] for u, *_ in segments}
    if speaker_file == "utt2spk":
        (data / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(spk.items())))
    else:
        by = {s: [u for u in sorted(spk) if spk[u] == s] for s in sorted(set(spk.values()))}
        (data / "spk2utt").write_text("".join(f"{s} {' '.join(u)}\n" for s, u in by.items()))
    return data


def test_kaldi_segments_become_offsets(tmp_path: Path):
    data = kaldi_segmented(tmp_path)
    manifests = prepare_kaldi(data, tmp_path / "out", **NO_SPLIT)
    a, b = str(tmp_path / "wav" / "meeting_a.wav"), str(tmp_path / "wav" / "meeting_b.flac")

    def row(utt: str, path: str, offset: float, duration: float) -> dict:
        return {
            "audio_filepath": path,
            "duration": duration,
            "text": f"words of {utt}",
            "offset": offset,
        }

    assert rows(manifests["train"]) == [  # the order of `text`
        row("ann-A-000", a, 0.0, 1.0),
        row("ann-A-001", a, 2.5, 1.5),
        row("bob-A-000", a, 1.25, 1.25),
        row("bob-B-000", b, 0.5, 1.0),
        row("cid-B-000", b, 1.5, 1.5),
        row("cid-B-001", b, 0.0, 0.5),
    ]
    # The library reads back exactly those samples of the long file.
    utt = read_manifest(manifests["train"])[2]
    whole, _ = sf.read(a, dtype="float32")
    segment = utt.load(RATE).numpy()
    assert utt.offset == 1.25 and segment.shape == (10000,)
    np.testing.assert_allclose(segment, whole[10000:20000], atol=1e-6)


@pytest.mark.parametrize("speaker_file", ["utt2spk", "spk2utt"])
def test_kaldi_split_by_speaker(tmp_path: Path, speaker_file: str):
    data = kaldi_segmented(tmp_path, speaker_file)
    for seed in range(4):
        parts = manifest_rows(
            prepare_kaldi(
                data, tmp_path / f"out{seed}", dev_fraction=0.3, test_fraction=0.3, seed=seed
            )
        )
        who = {n: {r["text"].split()[-1][:3] for r in p} for n, p in parts.items()}
        assert [len(who[n]) for n in ("train", "dev", "test")] == [1, 1, 1]
        assert who["train"] | who["dev"] | who["test"] == {"ann", "bob", "cid"}
        assert sum(len(p) for p in parts.values()) == 6
        assert all(len(p) == 2 for p in parts.values())  # two utterances per speaker


def test_kaldi_pipes_and_archive_offsets_are_refused_with_the_fix(tmp_path: Path):
    data = kaldi_recipe(tmp_path)
    (data / "wav.scp").write_text(
        "utt0 audio/rec0.wav\nutt1 sox audio/rec1.flac -t wav - |\nutt2 /data/raw.ark:1234\n",
        encoding="utf-8",
    )

    with pytest.raises(SkippedEntries) as excinfo:
        prepare_kaldi(data, tmp_path / "out", **NO_SPLIT)

    scp = data / "wav.scp"
    assert skipped(excinfo) == [
        f"{scp}:2: recording utt1 is a command (sox audio/rec1.flac -t wav - |), not a file: "
        "write its output to one, e.g. `sox audio/rec1.flac -t wav - > wav/utt1.wav` or "
        "`wav-copy 'sox audio/rec1.flac -t wav - |' wav/utt1.wav`, and list that file in "
        "wav.scp [1 utterance lost]",
        f"{scp}:3: recording utt2 is at a byte offset in an archive (/data/raw.ark:1234), not a "
        "file: write it out with Kaldi's `wav-copy /data/raw.ark:1234 wav/utt2.wav` and list "
        "that file in wav.scp [1 utterance lost]",
    ]
    message = str(excinfo.value)
    assert message.splitlines()[-1].startswith("to write every recording as a file: ")
    assert 'wav-copy "$rx" "wav/$id.wav"' in message
    assert [r["text"] for r in rows(tmp_path / "out" / "train.jsonl")] == ["HELLO THERE"]


def test_kaldi_bad_entries_named_by_file_and_line(tmp_path: Path):
    data = kaldi_segmented(tmp_path)
    (data / "segments").write_text(
        "ann-A-000 A 0 1\n"
        "ann-A-001 A 3.5 4.5\n"  # ends 0.5 s past the 4 s file
        "bob-A-000 A 1.25\n"  # a field short
        "bob-B-000 C 0 1\n"  # no such recording
        "cid-B-000 B 1.0 0.5\n"  # ends before it starts
        "cid-B-001 B 0 0.5\n"
        "cid-B-001 B 0 0.7\n"  # the same utterance again
        "extra B 0 1\n",  # no text
        encoding="utf-8",
    )
    (data / "text").write_text(
        (data / "text").read_text() + "ghost nothing else\nempty\n", encoding="utf-8"
    )

    with pytest.raises(SkippedEntries) as excinfo:
        prepare_kaldi(data, tmp_path / "out", **NO_SPLIT)

    seg, text = data / "segments", data / "text"
    problems = skipped(excinfo)
    for where, cause in [
        (f"{seg}:2", "utterance ann-A-001: 3.5-4.5 s lies outside recording A (4.000 s)"),
        (f"{seg}:3", "expected UTTERANCE RECORDING START END"),
        (f"{seg}:4", "utterance bob-B-000: recording C is not in wav.scp"),
        (f"{seg}:5", "utterance cid-B-000: bad times 1.0 to 0.5"),
        (f"{seg}:7", f"cid-B-001 again (first on {seg}:6)"),
        (f"{seg}:8", "utterance extra has no line in text"),
        # the text lines of refused segments lines are not reported again; an unknown one is
        (f"{text}:7", "utterance ghost has no line in segments"),
        (f"{text}:8", "utterance empty has an empty transcript"),
    ]:
        assert sum(p.startswith(f"{where}: ") and cause in p for p in problems) == 1, where
    assert len(problems) == 8
    assert [r["text"] for r in rows(tmp_path / "out" / "train.jsonl")] == [
        "words of ann-A-000",
        "words of cid-B-001",
    ]


@pytest.mark.parametrize("with_segments", [False, True])
def test_kaldi_empty_or_missing_transcript_is_reported_once(tmp_path: Path, with_segments: bool):
    data = kaldi_recipe(tmp_path)
    if with_segments:  # each utterance the whole of the recording of the same name
        (data / "segments").write_text("".join(f"utt{i} utt{i} 0 -1\n" for i in range(3)))
    (data / "text").write_text("utt0 HELLO THERE\nutt1\n", encoding="utf-8")  # utt2: no line

    with pytest.raises(SkippedEntries) as excinfo:
        prepare_kaldi(data, tmp_path / "out", **NO_SPLIT)

    missing = (
        f"{data / 'segments'}:3: utterance utt2 has no line in text"
        if with_segments
        else f"{data / 'wav.scp'}:3: recording utt2 has no utterance in text"
    )
    assert skipped(excinfo) == [
        f"{data / 'text'}:2: utterance utt1 has an empty transcript",
        missing,
    ]
    out = tmp_path / "out"
    assert str(excinfo.value).splitlines()[0] == (
        f"{data}: 2 entries skipped; the manifests in {out} hold the 1 good utterance (1 train)"
    )
    assert [r["text"] for r in rows(out / "train.jsonl")] == ["HELLO THERE"]


def test_kaldi_lines_not_utf8_are_named_once_and_the_rest_used(tmp_path: Path):
    data = kaldi_recipe(tmp_path)
    write_audio(tmp_path / "s5" / "audio" / "rec3.wav", 0.5)
    (data / "wav.scp").write_bytes(
        b"utt0 audio/rec0.wav\nutt1 audio/rec1.wav\nutt2 audio/r\xe9c2.wav\nutt3 audio/rec3.wav\n"
    )
    (data / "text").write_bytes(b"utt0 HELLO\nutt1 CAF\xc9 NOIR\nutt2 BYE\nutt3 LAST\n")
    (data / "utt2spk").write_bytes(b"utt0 ann\nutt1 bob\nutt2 cid\nutt3 j\xf6rg\n")

    with pytest.raises(SkippedEntries) as excinfo:
        prepare_kaldi(data, tmp_path / "out", **NO_SPLIT)

    # one line per bad line: neither the recording nor the utterance it leaves without a
    # partner in another table is reported again
    assert skipped(excinfo) == [
        f"{data / 'wav.scp'}:3: not UTF-8 text (byte 0xE9 at character 13)",
        f"{data / 'text'}:2: not UTF-8 text (byte 0xC9 at character 9)",
        f"{data / 'utt2spk'}:4: not UTF-8 text (byte 0xF6 at character 7)",
    ]
    assert [r["text"] for r in rows(tmp_path / "out" / "train.jsonl")] == ["HELLO"]


def test_kaldi_missing_file_and_unused_recording(tmp_path: Path):
    data = kaldi_recipe(tmp_path)
    (data / "wav.scp").write_text(
        (data / "wav.scp").read_text() + "utt3 audio/nothing.wav\nutt4 audio/rec0.wav\n"
    )
    (data / "text").write_text((data / "text").read_text() + "utt3 lost\n")
    with pytest.raises(SkippedEntries) as excinfo:
        prepare_kaldi(data, tmp_path / "out", **NO_SPLIT)
    problems = skipped(excinfo)
    assert len(problems) == 2
    assert problems[0].startswith(f"{data / 'wav.scp'}:4: no audio file audio/nothing.wav")
    assert problems[0].endswith("[1 utterance lost]")
    assert problems[1] == f"{data / 'wav.scp'}:5: recording utt4 has no utterance in text"


def test_kaldi_names_a_recording_with_nan_samples_and_its_lost_utterances(tmp_path: Path):
    data = kaldi_segmented(tmp_path)
    bad = write_non_finite(tmp_path / "wav" / "meeting_a.wav", 4.0, 3.0, np.nan)

    with pytest.raises(SkippedEntries) as excinfo:
        prepare_kaldi(data, tmp_path / "out", **NO_SPLIT)

    # A whole recording is refused: its three segments are counted as lost, not each named.
    assert skipped(excinfo) == [
        f"{data / 'wav.scp'}:1: {bad}: {NON_FINITE} 3.00 s [3 utterances lost]"
    ]
    kept = [r["text"] for r in rows(tmp_path / "out" / "train.jsonl")]
    assert kept == ["words of bob-B-000", "words of cid-B-000", "words of cid-B-001"]


def test_kaldi_needs_wav_scp_and_text(tmp_path: Path):
    (tmp_path / "data").mkdir()
    with pytest.raises(ImporterError, match=r"no wav\.scp; expected a Kaldi data directory"):
        prepare_kaldi(tmp_path / "data", tmp_path / "out")


# --- through the command line ------------------------------------------------------------


def test_asr_prepare_folder_command(tmp_path: Path, capsys: pytest.CaptureFixture):
    src = tmp_path / "recordings"
    for i in range(8):
        write_audio(src / f"f{i}.wav", 0.25).with_suffix(".txt").write_text(f"file {i}")
    out = tmp_path / "out"
    argv = ["prepare", "folder", "--source", str(src), "--out-dir", str(out)]

    assert main([*argv, "--dev-fraction", "0.25", "--test-fraction", "0.125"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"{n}: {out / n}.jsonl" for n in ("train", "dev", "test")]
    assert [len(read_manifest(out / f"{n}.jsonl")) for n in ("train", "dev", "test")] == [5, 2, 1]

    (src / "f3.txt").unlink()  # one file without text: the rest written, exit status 1
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"asr: error: {src}: 1 entry skipped; the manifests in {out} hold")
    assert f"{src / 'f3.wav'}: no transcript f3.txt beside it" in err.splitlines()
    assert sum(len(rows(out / f"{n}.jsonl")) for n in ("train", "dev", "test")) == 7

    with pytest.raises(SystemExit) as exit_info:  # argparse's own one-line message
        main([*argv, "--dev-fraction", "1.5"])
    assert exit_info.value.code == 2
    assert "1.5: a fraction must be at least 0 and below 1" in capsys.readouterr().err
