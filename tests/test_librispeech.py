"""LibriSpeech and Mini LibriSpeech: prepare (through lhotse) on copies generated in the
release's layout, checked field by field; the count, transcript and audio checks; the
checksummed, resumable download from a local server; the official LMs turned into LM folders;
the recipe's stages end to end on a generated copy and on the shared sample (slow)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.cli import main as asr_main
from asr.data import read_manifest
from asr.datasets import load_dataset
from asr.files import DownloadError
from asr.lm import ArpaModel, load_lm_files
from data_prep import librispeech
from data_prep.librispeech import LibriSpeechError
from tests.conftest import ROOT, SHARED, tone_utterance

SAMPLE = SHARED / "librispeech-sample"
SAMPLE_RATE = 16000
# part -> {(speaker, chapter): transcript lines}; the tone "language" of conftest (a, b, c).
MINI = {
    "train-clean-5": {("19", "198"): ["ABC", "CAB", "BA"], ("26", "495"): ["CA B", "BC"]},
    "dev-clean-2": {("84", "121123"): ["ACB", "B A"]},
}


def make_librispeech(root: Path, corpus: dict) -> list[dict]:
    """Write `root/LibriSpeech/<part>/<spk>/<chapter>/` with FLACs and `.trans.txt` files (the
    first without its final newline, as in the shared sample); returns the expected manifest
    rows, with "part" and "id", in utterance-id order."""
    rng = np.random.default_rng(0)
    rows = []
    for part, chapters in corpus.items():
        for n, ((speaker, chapter), texts) in enumerate(chapters.items()):
            folder = root / "LibriSpeech" / part / speaker / chapter
            folder.mkdir(parents=True)
            lines = []
            for i, text in enumerate(texts):
                utt = f"{speaker}-{chapter}-{i:04d}"
                # one tone per letter (conftest's TONES); an apostrophe is not heard
                wav = tone_utterance(text.lower().replace("'", ""), SAMPLE_RATE, rng)
                sf.write(folder / f"{utt}.flac", wav, SAMPLE_RATE, subtype="PCM_16")
                lines.append(f"{utt} {text}")
                rows.append(
                    {
                        "part": part,
                        "id": utt,
                        "audio_filepath": str((folder / f"{utt}.flac").resolve()),
                        "duration": round(len(wav) / SAMPLE_RATE, 4),
                        "text": text.lower(),
                    }
                )
            ending = "" if n == 0 else "\n"
            (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + ending)
    return sorted(rows, key=lambda r: (r["part"], r["id"]))


def release_counts(monkeypatch, corpus: dict) -> None:
    """Make the generated parts complete: their release counts become the fixture's."""
    for part, chapters in corpus.items():
        count = sum(len(texts) for texts in chapters.values())
        monkeypatch.setitem(
            librispeech.PARTS,
            part,
            dataclasses.replace(librispeech.PARTS[part], utterances=count),
        )


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_rows(rows: list[dict], part: str) -> list[dict]:
    return [
        {k: r[k] for k in ("audio_filepath", "duration", "text")} for r in rows if r["part"] == part
    ]


@pytest.fixture
def mini(tmp_path: Path, monkeypatch) -> tuple[Path, list[dict]]:
    rows = make_librispeech(tmp_path / "corpus", MINI)
    release_counts(monkeypatch, MINI)
    return tmp_path / "corpus", rows


def test_release_table():
    counts = {name: part.utterances for name, part in librispeech.PARTS.items()}
    assert counts == {
        "dev-clean": 2703,
        "dev-other": 2864,
        "test-clean": 2620,
        "test-other": 2939,
        "train-clean-100": 28539,
        "train-clean-360": 104014,
        "train-other-500": 148688,
        "dev-clean-2": 1089,
        "train-clean-5": 1519,
    }
    assert librispeech.PARTS["test-other"].url == (
        "https://www.openslr.org/resources/12/test-other.tar.gz"
    )
    assert librispeech.PARTS["dev-clean-2"].url == (
        "https://www.openslr.org/resources/31/dev-clean-2.tar.gz"
    )
    for part in librispeech.PARTS.values():
        assert len(part.md5) == 32 and (part.sha256 is None) == (part.resource == 31)


def test_mini_prepare_field_by_field(mini, tmp_path: Path):
    source, rows = mini
    out = tmp_path / "out"
    manifests = librispeech.prepare_mini_librispeech(source, out)
    assert manifests == {
        "train": out / "train.jsonl",
        "dev": out / "dev.jsonl",
        "train-clean-5": out / "train-clean-5.jsonl",
        "dev-clean-2": out / "dev-clean-2.jsonl",
    }
    assert rows_of(out / "train-clean-5.jsonl") == expected_rows(rows, "train-clean-5")
    assert rows_of(out / "dev-clean-2.jsonl") == expected_rows(rows, "dev-clean-2")
    assert rows_of(out / "train.jsonl") == rows_of(out / "train-clean-5.jsonl")
    assert rows_of(out / "dev.jsonl") == rows_of(out / "dev-clean-2.jsonl")
    assert len(read_manifest(out / "train.jsonl")) == 5
    assert [r["text"] for r in rows_of(out / "train.jsonl")] == ["abc", "cab", "ba", "ca b", "bc"]
    # The LibriSpeech/ folder itself is accepted as well as the folder holding it.
    again = librispeech.prepare_mini_librispeech(source / "LibriSpeech", tmp_path / "again")
    assert again["train"].read_text() == (out / "train.jsonl").read_text()


def test_cli_with_chosen_parts(tmp_path: Path, monkeypatch, capsys):
    corpus = {
        "train-clean-100": {("103", "1240"): ["AB", "BA"]},
        "train-clean-360": {("100", "121669"): ["C"]},
        "dev-other": {("116", "288045"): ["CC"]},
        "test-other": {("1688", "142285"): ["A C"]},
    }
    rows = make_librispeech(tmp_path / "corpus", corpus)
    release_counts(monkeypatch, corpus)
    out = tmp_path / "out"
    argv = ["prepare", "librispeech", "--source", str(tmp_path / "corpus"), "--out-dir", str(out)]
    argv += ["--train-parts", "train-clean-100,train-clean-360", "--dev-parts", "dev-other"]
    argv += ["--test-parts", "test-other", "--jobs", "1"]
    assert asr_main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        f"train: {out / 'train.jsonl'}",
        f"dev: {out / 'dev.jsonl'}",
        *(f"{part}: {out / part}.jsonl" for part in corpus),
    ]
    train = expected_rows(rows, "train-clean-100") + expected_rows(rows, "train-clean-360")
    assert rows_of(out / "train.jsonl") == train
    assert rows_of(out / "dev.jsonl") == expected_rows(rows, "dev-other")
    assert rows_of(out / "test-other.jsonl") == expected_rows(rows, "test-other")


def _error(source: Path, tmp_path: Path, **options) -> str:
    with pytest.raises(LibriSpeechError) as err:
        librispeech.prepare_mini_librispeech(source, tmp_path / "out", **options)
    message = str(err.value)
    assert "\n" not in message
    assert not (tmp_path / "out").exists()  # nothing written from a bad copy
    return message


def _chapter(source: Path) -> Path:
    return source / "LibriSpeech/train-clean-5/19/198"


def test_partial_part_names_split_and_counts(mini, tmp_path: Path, capsys):
    source, _ = mini
    trans = _chapter(source) / "19-198.trans.txt"
    trans.write_text("\n".join(trans.read_text().splitlines()[:2]) + "\n")
    (_chapter(source) / "19-198-0002.flac").unlink()
    folder = source / "LibriSpeech/train-clean-5"
    assert _error(source, tmp_path) == (
        f"{folder.resolve()}: partial train-clean-5: 4 of the release's 5 utterances "
        "(--allow-partial prepares it anyway)"
    )
    out = librispeech.prepare_mini_librispeech(source, tmp_path / "out", allow_partial=True)
    assert len(rows_of(out["train"])) == 4
    assert (
        f"warning: {folder.resolve()}: partial train-clean-5: 4 of the release's 5 utterances; "
        "preparing it anyway (--allow-partial)"
    ) in capsys.readouterr().err


def test_more_utterances_than_the_release_is_refused(mini, tmp_path: Path):
    source, _ = mini
    chapter = _chapter(source)
    with open(chapter / "19-198.trans.txt", "a") as f:
        f.write("\n19-198-0003 CAB\n")
    (chapter / "19-198-0003.flac").write_bytes((chapter / "19-198-0000.flac").read_bytes())
    assert "6 utterances in train-clean-5, the release has 5" in _error(source, tmp_path)


@pytest.mark.parametrize(
    ("line", "cause"),
    [
        ("19-198-0001", "malformed line '19-198-0001'"),
        ("19-198-0001 cab", "malformed line '19-198-0001 cab'"),
        ("19-198-0001\tCAB", "malformed line"),
        ("19-199-0001 CAB", "utterance 19-199-0001 is not of chapter 19-198"),
        ("19-198-0000 CAB", "utterance 19-198-0000 listed twice"),
    ],
)
def test_malformed_transcript_line_names_file_and_line(mini, tmp_path: Path, line, cause):
    # lhotse alone stops on a line without text with "not enough values to unpack", naming
    # neither file nor line: the transcripts are read here first.
    source, _ = mini
    trans = _chapter(source) / "19-198.trans.txt"
    lines = trans.read_text().splitlines()
    lines[1] = line
    trans.write_text("\n".join(lines) + "\n")
    message = _error(source, tmp_path)
    assert message.startswith(f"{trans.resolve()}:2: {cause}")


def test_missing_audio_and_unlisted_audio_are_named(mini, tmp_path: Path):
    # lhotse skips a line whose audio is missing with only a log message.
    source, _ = mini
    chapter = _chapter(source)
    (chapter / "19-198-0001.flac").rename(chapter.parent.parent / "stray.flac")
    trans = (chapter / "19-198.trans.txt").resolve()
    assert _error(source, tmp_path) == f"{trans}:2: no audio file 19-198-0001.flac beside it"
    (chapter.parent.parent / "stray.flac").rename(chapter / "19-198-0009.flac")
    assert _error(source, tmp_path) == f"{trans}:2: no audio file 19-198-0001.flac beside it"
    (chapter / "19-198-0009.flac").rename(chapter / "19-198-0001.flac")
    extra = chapter / "19-198-0007.flac"
    extra.write_bytes((chapter / "19-198-0000.flac").read_bytes())
    assert _error(source, tmp_path) == f"{extra.resolve()}: no line for it in {trans}"


def test_missing_part_and_no_corpus(mini, tmp_path: Path):
    source, _ = mini
    message = _error(source, tmp_path, test_parts="test-clean")
    assert message == (
        f"{(source / 'LibriSpeech/test-clean').resolve()}: no such folder; part test-clean is "
        "not in this copy"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _error(empty, tmp_path).startswith(f"{empty}: no LibriSpeech parts")
    with pytest.raises(ValueError, match="unknown part"):
        librispeech.split_parts("test-clean,dev-clean-3")


def test_empty_part_is_refused_even_when_partial(mini, tmp_path: Path):
    source, _ = mini
    folder = source / "LibriSpeech/dev-clean-2"
    for path in sorted(folder.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    message = _error(source, tmp_path, allow_partial=True)
    assert message == f"{folder.resolve()}: no utterances (no <speaker>/<chapter>/*.trans.txt)"


def test_missing_lhotse_is_one_line_with_the_extra(mini, tmp_path: Path, monkeypatch, capsys):
    source, _ = mini
    monkeypatch.setitem(sys.modules, "lhotse", None)  # import lhotse -> ImportError
    argv = ["prepare", "librispeech", "--source", str(source), "--out-dir", str(tmp_path / "o")]
    assert asr_main(argv) == 1
    err = capsys.readouterr().err
    assert err == (
        "asr: error: librispeech: preparing it needs lhotse, an optional extra: "
        "pip install 'rnn-asr[lhotse]'\n"
    )


def test_registry_records():
    for name, record in [
        ("librispeech", librispeech.DATASET),
        ("mini_librispeech", librispeech.MINI_DATASET),
        ("librispeech_lm", librispeech.LM_DATASET),
    ]:
        assert load_dataset(name) is record
    defaults = {o.name: o.default for o in librispeech.MINI_DATASET.options}
    assert defaults["train_parts"] == "train-clean-5" and defaults["test_parts"] == ""


# --- download ----------------------------------------------------------------------------------


def _archive(source: Path, part: str) -> bytes:
    """`<part>.tar.gz` as OpenSLR ships it: LibriSpeech/<part>/... and LibriSpeech/README.TXT."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(source / "LibriSpeech" / part, arcname=f"LibriSpeech/{part}")
        readme = b"LibriSpeech README\n"
        info = tarfile.TarInfo("LibriSpeech/README.TXT")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    return buf.getvalue()


def _serve_mini(source: Path, range_server, monkeypatch) -> tuple:
    """Serve the Mini parts of `source` as archives whose md5 the release table then holds."""
    served, base = range_server
    for part in MINI:
        body = _archive(source, part)
        served.files[f"/31/{part}.tar.gz"] = body
        md5 = hashlib.md5(body).hexdigest()
        monkeypatch.setitem(
            librispeech.PARTS, part, dataclasses.replace(librispeech.PARTS[part], md5=md5)
        )
    return served, base


def test_download_resumes_checks_md5_and_keeps_both_parts(
    mini, range_server, tmp_path: Path, monkeypatch
):
    source, rows = mini
    served, base = _serve_mini(source, range_server, monkeypatch)
    root = tmp_path / "download"
    root.mkdir()
    first = served.files["/31/dev-clean-2.tar.gz"]
    (root / "dev-clean-2.tar.gz.part").write_bytes(first[:500])  # an interrupted download

    assert librispeech.download_librispeech(root, librispeech.MINI_PARTS, base) == root
    assert served.requests == [
        ("/31/dev-clean-2.tar.gz", "bytes=500-"),
        ("/31/train-clean-5.tar.gz", None),
    ]
    # Both parts are there, in one tree, although both archives have the top folder LibriSpeech/.
    for part in MINI:
        assert (root / "LibriSpeech" / part).is_dir()
        assert not (root / "LibriSpeech" / part).is_symlink()
    out = librispeech.prepare_mini_librispeech(root, tmp_path / "out")
    train = rows_of(out["train"])
    assert [r["text"] for r in train] == [r["text"] for r in expected_rows(rows, "train-clean-5")]
    assert [Path(r["audio_filepath"]).name for r in train] == [
        f"{r['id']}.flac" for r in rows if r["part"] == "train-clean-5"
    ]
    assert all(Path(r["audio_filepath"]).is_file() for r in train + rows_of(out["dev"]))
    # Finished: a second call fetches nothing.
    librispeech.download_librispeech(root, librispeech.MINI_PARTS, base)
    assert len(served.requests) == 2


def test_download_replaces_the_per_part_symlinks_of_older_versions(
    mini, range_server, tmp_path: Path, monkeypatch
):
    """Older versions unpacked each part to unpacked/<part>/ and linked LibriSpeech/<part> to it:
    such a copy is unpacked once more into the one tree, and prepares as before."""
    source, rows = mini
    _, base = _serve_mini(source, range_server, monkeypatch)
    root = tmp_path / "download"
    (root / "LibriSpeech").mkdir(parents=True)
    for part in MINI:
        old = Path("unpacked", part, "LibriSpeech", part)
        (root / old).mkdir(parents=True)  # left empty: what prepares must be unpacked anew
        (root / "LibriSpeech" / part).symlink_to(Path("..", old))
    librispeech.download_librispeech(root, librispeech.MINI_PARTS, base)
    for part in MINI:
        assert not (root / "LibriSpeech" / part).is_symlink()
    out = librispeech.prepare_mini_librispeech(root, tmp_path / "out")
    assert len(rows_of(out["train"])) == len(expected_rows(rows, "train-clean-5"))


def test_librispeech_parts_are_checked_by_sha256_too(range_server, tmp_path: Path, monkeypatch):
    served, base = range_server
    body = b"not really an archive"
    served.files["/12/dev-clean.tar.gz"] = body
    md5, sha = hashlib.md5(body).hexdigest(), hashlib.sha256(body).hexdigest()
    part = dataclasses.replace(librispeech.PARTS["dev-clean"], md5=md5)
    monkeypatch.setitem(librispeech.PARTS, "dev-clean", part)
    with pytest.raises(DownloadError, match=f"sha256 mismatch, expected {part.sha256}, got {sha}"):
        librispeech.download_librispeech(tmp_path / "d", ["dev-clean"], base)


def test_download_rejects_a_bad_checksum(mini, range_server, tmp_path: Path):
    source, _ = mini
    served, base = range_server
    body = _archive(source, "dev-clean-2")
    served.files["/31/dev-clean-2.tar.gz"] = body  # not the release: its md5 differs
    root = tmp_path / "download"
    with pytest.raises(DownloadError) as err:
        librispeech.download_librispeech(root, ["dev-clean-2"], base)
    assert str(err.value) == (
        f"{root / 'dev-clean-2.tar.gz'}: md5 mismatch, expected "
        f"{librispeech.PARTS['dev-clean-2'].md5}, got {hashlib.md5(body).hexdigest()} "
        f"(from {base}/31/dev-clean-2.tar.gz)"
    )
    assert list(root.iterdir()) == []


# --- the official LMs ----------------------------------------------------------------------------

# An ARPA bigram in the official models' style: upper-case words, <UNK>, tabs.
ARPA = """\\data\\
ngram 1=6
ngram 2=4

\\1-grams:
-0.9\t</s>
-99\t<s>\t-0.3
-1.2\t<UNK>
-0.6\tABC\t-0.2
-0.7\tCAB\t-0.25
-0.8\tB'A\t-0.1

\\2-grams:
-0.2\t<s> ABC
-0.3\tABC CAB
-0.4\tCAB </s>
-0.5\tB'A </s>

\\end\\
"""
LEXICON = "ABC\tAE1 B IY1 S IY1\nCAB\tK AE1 B\nB'A\tB IY1 EY1\nBA\tB AA1\n"


def make_lm_source(folder: Path) -> Path:
    folder.mkdir(parents=True)
    with gzip.open(folder / "3-gram.pruned.1e-7.arpa.gz", "wt") as f:
        f.write(ARPA)
    (folder / "librispeech-lexicon.txt").write_text(LEXICON)
    return folder


def test_official_lm_becomes_an_lm_folder(tmp_path: Path):
    source = make_lm_source(tmp_path / "lm-source")
    out = tmp_path / "lms"
    folders = librispeech.prepare_librispeech_lm(source, out, "3-gram.pruned.1e-7.arpa.gz")
    assert folders == {"3-gram.pruned.1e-7": out / "3-gram.pruned.1e-7"}
    files = load_lm_files(out / "3-gram.pruned.1e-7")
    assert (files.unit, files.order) == ("word", 2)
    assert files.arpa.read_text() == ARPA.lower()
    assert files.lexicon.read_text() == "abc\ta b c |\nb'a\tb ' a |\nba\tb a |\ncab\tc a b |\n"
    info = json.loads((out / "3-gram.pruned.1e-7/lm.json").read_text())
    assert info["words"] == 4
    assert info["lm_bin_sha256"] == hashlib.sha256(files.binary.read_bytes()).hexdigest()
    model = ArpaModel(files.arpa)
    assert model.log10_prob("cab", ("abc",)) == pytest.approx(-0.3)
    assert model.log10_prob("zzz") == pytest.approx(-1.2)  # <UNK> became KenLM's <unk>


def test_official_lm_errors(tmp_path: Path):
    source = make_lm_source(tmp_path / "lm-source")
    with pytest.raises(LibriSpeechError, match=r"no 4-gram.arpa.gz \(download it"):
        librispeech.prepare_librispeech_lm(source, tmp_path / "out")
    (source / "librispeech-lexicon.txt").write_text("ABC\tAE1\nCAB\n")
    with pytest.raises(LibriSpeechError) as err:
        librispeech.prepare_librispeech_lm(source, tmp_path / "out", "3-gram.pruned.1e-7.arpa.gz")
    assert str(err.value) == (
        f"{source / 'librispeech-lexicon.txt'}:2: malformed lexicon line 'CAB' "
        "(expected WORD PHONES)"
    )


def test_lm_download_checks_size_and_sha256(range_server, tmp_path: Path, monkeypatch):
    served, base = range_server
    body = LEXICON.encode()
    served.files["/11/librispeech-lexicon.txt"] = body
    good = librispeech.LMResource(
        "librispeech-lexicon.txt", len(body), hashlib.sha256(body).hexdigest()
    )
    monkeypatch.setitem(librispeech.LM_RESOURCES, good.name, good)
    root = tmp_path / "lm"
    (root).mkdir()
    (root / "librispeech-lexicon.txt.part").write_bytes(body[:10])
    librispeech.download_librispeech_lm(root, [good.name], base)
    assert (root / good.name).read_bytes() == body
    assert served.requests == [("/11/librispeech-lexicon.txt", "bytes=10-")]
    monkeypatch.setitem(
        librispeech.LM_RESOURCES, good.name, dataclasses.replace(good, size=len(body) + 1)
    )
    with pytest.raises(DownloadError, match=f"expected {len(body) + 1}$"):
        librispeech.download_librispeech_lm(tmp_path / "other", [good.name], base)


# --- the recipe -----------------------------------------------------------------------------------

TINY = [
    "data.batch_seconds=12",
    "data.num_workers=0",
    "features.n_mels=24",
    "model.subsample=1",
    "model.conv_channels=0",
    "model.hidden_size=32",
    "model.num_layers=1",
    "train.max_steps=12",
    "train.warmup_steps=2",
    "train.lr=0.01",
    "train.average_last=0",
    "train.progress=false",
]


def run_recipe(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    exp = tmp_path / "exp"
    env = {**os.environ, "ASR": f"{sys.executable} -m asr.cli", "OMP_NUM_THREADS": "1"}
    cmd = [
        "bash",
        str(ROOT / "recipes/librispeech/run.sh"),
        "--exp-dir",
        str(exp),
        *args,
        "--",
        *TINY,
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run, json.loads((exp / "results.json").read_text())


@pytest.mark.slow
def test_recipe_on_a_generated_copy_with_the_official_lm(tmp_path: Path):
    corpus = {
        "train-clean-100": {("103", "1240"): ["ABC", "CAB", "B'A", "ABC CAB"]},
        "dev-clean": {("1272", "128104"): ["CAB ABC"]},
        "test-clean": {("1089", "134686"): ["ABC", "B'A CAB"]},
    }
    make_librispeech(tmp_path / "corpus", corpus)
    lm_source = make_lm_source(tmp_path / "lm-source")
    parts = ["--train-parts", "train-clean-100", "--dev-parts", "dev-clean"]
    parts += ["--test-parts", "test-clean", "--allow-partial"]
    run, results = run_recipe(
        tmp_path,
        "--source",
        str(tmp_path / "corpus"),
        *parts,
        "--lm-source",
        str(lm_source),
        "--official-lms",
        "3-gram.pruned.1e-7.arpa.gz",
    )
    assert "partial train-clean-100: 4 of the release's 28539 utterances" in run.stderr
    names = {"dev", "test-clean", "test-clean-3-gram.pruned.1e-7"}
    assert names == {name for name in results if "wer" in results[name]}
    assert results["test-clean"]["utterances"] == 2
    # Beam search with the lexicon can only output its words.
    hyps = [line.split("\t")[1] for line in run.stdout.splitlines() if "\t" in line]
    assert len(hyps) == 2 and set(" ".join(hyps).split()) <= {"abc", "cab", "b'a", "ba"}
    assert (tmp_path / "exp/lms/3-gram.pruned.1e-7/lm.bin").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"{SAMPLE} is absent (set ASR_DATA)")
def test_recipe_on_the_shared_sample(tmp_path: Path):
    parts = ["--train-parts", "test-clean", "--dev-parts", "test-clean"]
    parts += ["--test-parts", "test-clean", "--allow-partial", "--lm", "train"]
    run, results = run_recipe(tmp_path, "--source", str(SAMPLE), *parts)
    assert "partial test-clean: 4 of the release's 2620 utterances" in run.stderr
    # dev is test-clean here: evaluated once, as test-clean
    assert {"test-clean", "test-clean-lm"} == {name for name in results if "wer" in results[name]}
    assert results["test-clean"]["utterances"] == 4
    files = [line.split("\t")[0] for line in run.stdout.splitlines() if "\t" in line]
    assert [Path(f).name for f in files] == ["1089-134686-0000.flac", "1089-134686-0001.flac"]


@pytest.mark.slow
def test_mini_recipe_prepares_its_parts(tmp_path: Path):
    make_librispeech(tmp_path / "corpus", MINI)
    env = {**os.environ, "ASR": f"{sys.executable} -m asr.cli", "OMP_NUM_THREADS": "1"}
    cmd = ["bash", str(ROOT / "recipes/mini_librispeech/run.sh"), "--exp-dir", str(tmp_path)]
    bad = subprocess.run([*cmd, "--lm", "big"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    assert "--lm takes official, train or none (see --help)" in bad.stderr
    cmd += ["--source", str(tmp_path / "corpus"), "--allow-partial", "--stop-stage", "0"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "manifests: train (train-clean-5), dev (dev-clean-2), test (none)" in run.stdout
    assert "partial dev-clean-2: 2 of the release's 1089 utterances" in run.stderr
    data = tmp_path / "data"
    assert sorted(p.name for p in data.iterdir()) == [
        "dev-clean-2.jsonl",
        "dev.jsonl",
        "train-clean-5.jsonl",
        "train.jsonl",
    ]
    assert len(read_manifest(data / "train.jsonl")) == 5


def test_download_dir_fetches_only_the_parts_and_models_asked_for(monkeypatch, tmp_path: Path):
    from asr.datasets import DatasetError, prepare_dataset

    asked: list[tuple[str, tuple[str, ...]]] = []

    def fake_parts(root, parts):
        asked.append(("parts", tuple(parts)))
        raise DatasetError("stop here: the download is what this test looks at")

    def fake_lm(root, names):
        asked.append(("lm", tuple(names)))
        raise DatasetError("stop here")

    monkeypatch.setattr(librispeech, "download_librispeech", fake_parts)
    monkeypatch.setattr(librispeech, "download_librispeech_lm", fake_lm)
    spec = load_dataset("librispeech")
    with pytest.raises(DatasetError, match="stop here"):
        prepare_dataset(
            spec,
            tmp_path,
            download_dir=tmp_path,
            train_parts="",
            dev_parts="dev-clean",
            test_parts="test-clean",
        )
    with pytest.raises(DatasetError, match="stop here"):
        prepare_dataset(
            load_dataset("librispeech_lm"), tmp_path, download_dir=tmp_path, models="4-gram.arpa.gz"
        )
    assert asked == [
        ("parts", ("dev-clean", "test-clean")),
        ("lm", ("librispeech-lexicon.txt", "4-gram.arpa.gz")),
    ]
