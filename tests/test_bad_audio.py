"""Bad audio everywhere: transcribe, evaluate, prepare and training name each bad file on one
line with its cause, still process every good one, end with a summary and exit 1; no traceback
unless --debug. Training skips an utterance that fails to load mid-epoch (in a worker)."""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import AudioError, audio_duration
from asr.checkpoint import CheckpointError
from asr.cli import main
from asr.config import load_config
from asr.data import SpeechDataset, Utterance, collate, write_manifest
from asr.train import Trainer
from tests.bad_audio import RATE, make_bad_audio, make_checkpoint, write_silence
from tests.conftest import make_tone_corpus, tiny_overrides


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[list[Path], dict[Path, str], Path, Path]:
    """(good files, {bad file: cause words}, 3 hours of silence, an untrained checkpoint)."""
    root = tmp_path_factory.mktemp("bad_audio")
    good, bad = make_bad_audio(root / "audio")
    silence = write_silence(root / "audio" / "silence_3h.wav", 3)
    return good, bad, silence, make_checkpoint(root / "model.pt")


def _one_line_each(err: str, bad: dict[Path, str]) -> None:
    """Each bad file is named on exactly one stderr line, with its cause; no traceback."""
    assert "Traceback" not in err
    for path, cause in bad.items():
        lines = [line for line in err.splitlines() if f"{path}:" in line]
        assert len(lines) == 1, (path, lines)
        assert cause in lines[0], (path, lines[0])


def test_good_formats_read(corpus):
    good, _, silence, _ = corpus
    assert [round(audio_duration(p), 3) for p in good] == [0.6] * len(good)
    assert sf.info(str(good[-1])).format == "FLAC"  # named .wav, read by its content
    assert audio_duration(silence) == 3 * 3600
    assert silence.stat().st_blocks * 512 < 1 << 20  # sparse: no 173 MB written


@pytest.mark.slow
def test_transcribe_names_each_bad_file_and_writes_every_good_one(corpus, tmp_path, capsys):
    good, bad, silence, model = corpus
    out = tmp_path / "out"
    files = [str(p) for p in [*good, silence, *bad]]
    assert main(["transcribe", "--model", str(model), "--out-dir", str(out), *files]) == 1
    err = capsys.readouterr().err
    _one_line_each(err, bad)
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(p.stem + ".txt" for p in [*good, silence])
    assert (out / "silence_3h.txt").read_text() == "\n"  # no speech in 3 hours: empty text
    assert f"asr: {len(bad)} input(s) failed, {len(good) + 1} transcribed" in err


def test_debug_shows_the_traceback(corpus, tmp_path, capsys):
    good, _, _, _ = corpus
    args = ["transcribe", "--model", str(tmp_path / "none.pt"), str(good[0])]
    assert main(args) == 1
    assert capsys.readouterr().err == f"asr: error: {tmp_path / 'none.pt'}: no such checkpoint\n"
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        main(["--debug", *args])


def test_unexpected_errors_are_one_line_too(tmp_path, capsys, monkeypatch):
    import asr.cli

    def broken(args):
        raise KeyError("boom")

    monkeypatch.setattr(asr.cli, "cmd_validate", broken)
    assert main(["validate", str(tmp_path / "m.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("asr: error: unexpected KeyError: 'boom'") and "--debug" in err
    with pytest.raises(KeyError):
        main(["--debug", "validate", str(tmp_path / "m.jsonl")])


@pytest.mark.slow
def test_evaluate_names_each_bad_file_and_scores_the_good(corpus, tmp_path, capsys):
    good, bad, silence, model = corpus
    utts = [Utterance(str(p), 0.6, "abc") for p in good]
    utts.append(Utterance(str(silence), 3 * 3600.0, "abc"))
    utts += [Utterance(str(p), 1.0 if "all_" in p.name else 0.6, "abc") for p in bad]
    manifest = tmp_path / "test.jsonl"
    write_manifest(manifest, utts)
    args = ["evaluate", "--model", str(model), "--manifest", str(manifest)]
    assert main([*args, "--out-dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    _one_line_each(err, {**bad, silence: "over the 600 s limit"})
    assert f"({len(good)} utterances" in out
    assert f"asr: {len(bad) + 1} utterance(s) failed, {len(good)} scored" in err
    summary = json.loads((tmp_path / "summary-test.json").read_text())
    assert summary["failed"] == len(bad) + 1


@pytest.mark.slow
def test_prepare_folder_names_each_unreadable_file(corpus, tmp_path, capsys):
    good, bad, silence, _ = corpus
    src = tmp_path / "src"
    src.mkdir()
    write_silence(src / silence.name, 3)
    (src / silence.name).with_suffix(".txt").write_text("abc\n")
    for path in [*good, *bad]:
        if path.is_dir():
            (src / path.name).mkdir()
        elif path.name != "no_permission.wav":
            shutil.copy(path, src / path.name)
        if path.name != "no_permission.wav":
            (src / path.name).with_suffix(".txt").write_text("abc\n")
    out = tmp_path / "data"
    args = ["prepare", "folder", str(src), "--out-dir", str(out), "--dev-fraction", "0"]
    assert main([*args, "--test-fraction", "0"]) == 1
    err = capsys.readouterr().err
    # Every sample is read: the NaN and Inf files, whose headers are fine, are named too.
    named = {
        src / p.name: cause
        for p, cause in bad.items()
        if p.is_file() and p.name != "no_permission.wav"
    }
    assert {p.name for p, cause in named.items() if "NaN" in cause} == {
        "all_nan.wav",
        "all_inf.wav",
    }
    _one_line_each(err, {**named, src / silence.name: "10800.0 s, over the 600 s"})
    assert "a_folder.txt: transcript with no audio file" in err  # a folder is not audio
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert sorted(Path(r["audio_filepath"]).name for r in rows) == sorted(p.name for p in good)


def _trainer(tmp_path: Path, workers: int) -> Trainer:
    train = make_tone_corpus(tmp_path / "train")
    dev = make_tone_corpus(tmp_path / "dev")
    overrides = [
        *tiny_overrides(train),
        f"data.dev_manifest={dev}",
        f"data.num_workers={workers}",
        "train.epochs=1",
        "train.spec_augment=false",
        "train.progress=false",
    ]
    return Trainer(load_config(None, overrides), tmp_path / "exp")


def test_training_skips_utterances_that_fail_to_load_in_a_worker(tmp_path, capsys):
    trainer = _trainer(tmp_path, workers=1)
    trainer.fit_cmvn()
    deleted, corrupted, nan = (Path(trainer.train_utts[i].audio_filepath) for i in (0, 3, 5))
    deleted.unlink()  # after the manifest was checked
    corrupted.write_bytes(b"RIFF" + bytes(40))
    sf.write(nan, np.full(4000, np.nan, np.float32), RATE, subtype="FLOAT")
    result = trainer.run()
    out = capsys.readouterr().out
    for path, cause in [(deleted, "no such file"), (corrupted, "cannot read"), (nan, "NaN")]:
        lines = [line for line in out.splitlines() if str(path) in line]
        assert len(lines) == 1 and lines[0].startswith("warning: utterance skipped at epoch 1: ")
        assert cause in lines[0]
    assert trainer.progress.failed_utterances == 3
    assert result.losses and all(np.isfinite(result.losses))
    summary = json.loads((tmp_path / "exp" / "train_summary.json").read_text())
    assert summary["failed_utterances"] == 3


def test_a_batch_with_nothing_loadable_is_skipped(tmp_path, capsys):
    trainer = _trainer(tmp_path, workers=0)
    trainer.fit_cmvn()
    Path(trainer.train_utts[0].audio_filepath).unlink()
    batch = collate([trainer.dataset[0]])
    assert len(batch["wav_lens"]) == 0 and batch["wavs"].shape == (0, 0)
    assert batch["errors"] == [f"{trainer.train_utts[0].audio_filepath}: no such file"]
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.train_step([batch]) is None
    assert trainer.progress.skipped_batches == 1 and trainer.progress.failed_utterances == 1
    assert all(v.equal(weights[k]) for k, v in trainer.model.state_dict().items())
    good = collate([trainer.dataset[i] for i in range(1, 4)])
    assert trainer.train_step([batch, good]) is not None  # the good batch alone makes the step
    assert trainer.progress.skipped_batches == 2
    assert "1 batch(es) left out at epoch 1" in capsys.readouterr().out


def test_dataset_error_item_names_the_file(tmp_path):
    path = tmp_path / "gone.wav"
    item = SpeechDataset([Utterance(str(path), 1.0, "a")], None, RATE)[0]
    assert item == {"error": f"{path}: no such file", "index": 0}


@pytest.mark.slow
def test_two_processes_skip_an_utterance_that_fails_on_one_of_them(tmp_path):
    from tests.test_distributed import torchrun

    manifest = make_tone_corpus(tmp_path / "train")
    dev = make_tone_corpus(tmp_path / "dev")
    nan = tmp_path / "train" / "utt0_4.wav"  # the header is fine: it fails only when loaded
    frames = sf.info(str(nan)).frames
    sf.write(nan, np.full(frames, np.nan, np.float32), RATE, subtype="FLOAT")
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    settings = [
        *tiny_overrides(manifest),
        f"data.dev_manifest={dev}",
        "data.batch_seconds=0.5",  # two utterances a batch: one a process, so the NaN file's
        "train.epochs=2",  # process has nothing left of its batch, which all then leave out
        "train.progress=false",
    ]
    run = torchrun(["--config", str(config), "--out-dir", "exp", *settings], 2, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if str(nan) in line]
    assert len(lines) >= 2 and all("NaN or infinite" in line for line in lines)  # each epoch
    summary = json.loads((tmp_path / "exp" / "train_summary.json").read_text())
    assert summary["failed_utterances"] == len(lines) and summary["processes"] == 2
    # The NaN file's batch was left out each time; the schedule's steps were still all made
    # (skipped batches are no steps: the run goes into a third epoch when it needs to).
    assert summary["skipped_batches"] == len(lines)
    assert summary["step"] == summary["full_schedule_steps"]


@pytest.mark.skipif(
    os.geteuid() == 0, reason="running as root: every file is readable, the case cannot be made"
)
def test_a_file_without_read_permission_is_named(corpus, tmp_path, capsys):
    good, bad, _, model = corpus
    locked = next(p for p in bad if p.name == "no_permission.wav")
    assert main(["transcribe", "--model", str(model), str(locked), str(good[0])]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"{good[0]}\t")
    assert f"asr: skipped {locked}: permission denied" in err


def _deny_reading(monkeypatch: pytest.MonkeyPatch, locked: Path) -> None:
    """Make `locked` unreadable as it is to a user without read permission, even to root:
    access(2) answers no, open() raises PermissionError (EACCES), and libsndfile's own open
    fails with its "System error" (what each says for a non-root user on a mode-000 file)."""
    real_access, real_open, real_init = os.access, builtins.open, sf.SoundFile.__init__

    def is_locked(file) -> bool:
        return isinstance(file, str | os.PathLike) and Path(file) == locked

    def access(path, mode, *args, **kwargs):
        if is_locked(path) and mode & os.R_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    def open_(file, *args, **kwargs):
        if is_locked(file):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, *args, **kwargs)

    def init(self, file, *args, **kwargs):
        if is_locked(file):
            raise sf.LibsndfileError(2, f"Error opening {str(file)!r}: ")  # SF_ERR_SYSTEM
        real_init(self, file, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(sf.SoundFile, "__init__", init)


def test_an_unreadable_file_is_named_and_the_run_goes_on_even_as_root(
    corpus, tmp_path, capsys, monkeypatch
):
    good, _, _, model = corpus
    src = tmp_path / "src"
    src.mkdir()
    locked, other = src / "locked.wav", src / "good.wav"
    shutil.copy(good[0], locked)
    shutil.copy(good[0], other)
    for path in (locked, other):
        path.with_suffix(".txt").write_text("abc\n")
    _deny_reading(monkeypatch, locked)
    with pytest.raises(PermissionError), open(locked, "rb"):
        pass

    assert main(["transcribe", "--model", str(model), str(locked), str(other)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"{other}\t")
    _one_line_each(err, {locked: "permission denied"})
    assert f"asr: skipped {locked}: permission denied" in err

    out_dir = tmp_path / "data"
    args = ["prepare", "folder", str(src), "--out-dir", str(out_dir)]
    assert main([*args, "--dev-fraction", "0", "--test-fraction", "0"]) == 1
    err = capsys.readouterr().err
    _one_line_each(err, {locked: "permission denied"})
    rows = [json.loads(line) for line in (out_dir / "train.jsonl").read_text().splitlines()]
    assert [r["audio_filepath"] for r in rows] == [str(other)]


def test_a_folder_or_a_missing_path_is_named():
    with pytest.raises(AudioError, match="a folder, not an audio file"):
        audio_duration(Path(__file__).parent)
    with pytest.raises(AudioError, match="no such file"):
        audio_duration(Path(__file__).parent / "none.wav")


def test_training_refuses_a_manifest_of_bad_audio_naming_each_file(corpus, tmp_path):
    from asr.train import DataError, load_normalised

    good, bad, silence, _ = corpus
    files = [*good, silence, *bad]
    durations = {silence: 3 * 3600.0}
    utts = [
        Utterance(str(p), durations.get(p, 1.0 if "all_" in p.name else 0.6), "ab") for p in files
    ]
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, utts)
    with pytest.raises(DataError) as err:
        load_normalised(str(manifest), "train")
    # NaN and Inf samples pass the header check: loading them fails, and training skips them
    header_bad = {p: cause for p, cause in bad.items() if "NaN" not in cause}
    header_bad[silence] = "over the 600 s an utterance may last"
    _one_line_each(str(err.value), header_bad)
    lines = str(err.value).splitlines()[1:]
    assert len(lines) == len(header_bad) and all(line.startswith(f"{manifest}:") for line in lines)
    kept = load_normalised(str(manifest), "train", drop_bad_lines=True)
    assert len(kept) == len(good) + 2  # the good files, and the NaN and Inf ones
