"""The `asr` command on the tone corpus: train, transcribe (text/json, bad files), evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.cli import main
from asr.data import read_manifest
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, manifest) of a tiny model trained through the command line."""
    from tests.conftest import make_tone_corpus

    root = tmp_path_factory.mktemp("cli")
    manifest = make_tone_corpus(root / "tones")
    overrides = [*tiny_overrides(manifest), "train.epochs=40", "train.spec_augment=false"]
    config = root / "config.yaml"
    config.write_text("model:\n  rnn_type: gru\n")
    assert main(["train", "--config", str(config), "--out-dir", str(root / "exp"), *overrides]) == 0
    return root / "exp" / "best.pt", manifest


def test_transcribe_text_and_json(trained, capsys):
    model, manifest = trained
    utts = read_manifest(manifest)[:3]
    assert main(["transcribe", "--model", str(model), *(u.audio_filepath for u in utts)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [u.audio_filepath for u in utts]
    assert (
        main(["transcribe", "--model", str(model), "--format", "json", utts[0].audio_filepath]) == 0
    )
    row = json.loads(capsys.readouterr().out)
    assert row["file"] == utts[0].audio_filepath and row["text"] == lines[0].split("\t")[1]


def test_transcribe_goes_on_past_bad_files(trained, tmp_path, capsys):
    model, manifest = trained
    good = read_manifest(manifest)[0].audio_filepath
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 8000)
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    missing = tmp_path / "missing.wav"
    args = ["transcribe", "--model", str(model), str(empty), good, str(text), str(missing)]
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith(good + "\t")  # the good file is still transcribed
    for bad, cause in [(empty, "empty"), (text, "cannot read"), (missing, "no such file")]:
        assert any(str(bad) in line and cause in line for line in err.splitlines()), (bad, err)
    assert "3 input(s) failed, 1 transcribed" in err


def test_a_warning_is_one_asr_line(trained, tmp_path, capsys):
    model, manifest = trained
    audio, rate = sf.read(read_manifest(manifest)[0].audio_filepath)
    low = tmp_path / "low.wav"
    sf.write(low, audio[::2], rate // 2)  # below the model's rate: upsampled, with a warning
    assert main(["transcribe", "--model", str(model), str(low)]) == 0
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"asr: warning: {low}: {rate // 2} Hz audio upsampled to the model's ")


def test_transcribe_a_folder(trained, capsys):
    model, manifest = trained
    assert main(["transcribe", "--model", str(model), str(manifest.parent)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(read_manifest(manifest))


def test_evaluate_writes_report_and_results(trained, tmp_path, capsys):
    model, manifest = trained
    results = tmp_path / "results.json"
    args = [
        "evaluate",
        "--model",
        str(model),
        "--manifest",
        str(manifest),
        "--out-dir",
        str(tmp_path),
        "--name",
        "tones",
        "--results",
        str(results),
    ]
    assert main(args) == 0
    assert "tones: WER" in capsys.readouterr().out
    summary = json.loads((tmp_path / "summary-tones.json").read_text())
    entry = json.loads(results.read_text())["tones"]
    assert entry["utterances"] == summary["utterances"] == len(read_manifest(manifest))
    assert entry["wer"] == summary["wer"] <= 0.2
    report = (tmp_path / "errs-tones.txt").read_text()
    assert report.startswith("%WER") and report.count("REF:") == entry["utterances"]


def test_user_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["transcribe", "--model", str(bad), str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"asr: error: {bad}: not a checkpoint (a text file)"
    assert main(["train", "--config", str(tmp_path / "none.yaml"), "--out-dir", str(tmp_path)]) == 1
    assert "none.yaml" in capsys.readouterr().err
    onnx = tmp_path / "model.onnx"
    tune = ["tune-decoder", "--model", str(onnx), "--manifest", "m.jsonl", "--lexicon", "w.txt"]
    assert main(tune) == 1
    err = capsys.readouterr().err
    assert f"{onnx}: the tuned values are stored in a .pt checkpoint" in err


def write_recordings(folder: Path, takes: int = 3) -> list[Path]:
    """A folder of recordings as a user has them: tone 'speech', each with a .txt beside it."""
    from tests.conftest import TEXTS, tone_utterance

    rng = np.random.default_rng(0)
    wavs = []
    for take in range(takes):
        for i, text in enumerate(TEXTS):
            wav = folder / f"take{take}" / f"u{i}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(wav, tone_utterance(text, 8000, rng), 8000)
            wav.with_suffix(".txt").write_text(text + "\n")
            wavs.append(wav)
    return wavs


def test_from_a_folder_of_recordings_to_a_transcript(tmp_path, capsys):
    wavs = write_recordings(tmp_path / "recordings")
    data, exp = tmp_path / "data", tmp_path / "exp"
    assert main(["prepare", "folder", str(tmp_path / "recordings"), "--out-dir", str(data)]) == 0
    out, err = capsys.readouterr()
    splits = ("train", "dev", "test")
    assert out.splitlines() == [f"{name}: {data / name}.jsonl" for name in splits]
    counts = []
    for name in splits:
        utts = read_manifest(data / f"{name}.jsonl")
        counts.append(f"{len(utts)} {name} ({sum(u.duration for u in utts):.1f} s)")
    seconds = sum(u.duration for name in splits for u in read_manifest(data / f"{name}.jsonl"))
    assert err == f"asr: prepared 36 utterances ({seconds:.1f} s): {', '.join(counts)}\n"
    results = tmp_path / "results.json"
    fast = ["data.num_workers=0", "train.progress=false"]
    args = ["train", "--data", str(data), "--out-dir", str(exp), "--results", str(results)]
    assert main([*args, *fast, "train.epochs=2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{data / 'train.jsonl'}: 28 utterances, ")
    assert ": sized for under 0.25 h: 1 x 64 GRU (subsample 4), 2 epochs, lr 0.01, " in out[0]
    assert out[0].endswith(" 8000 Hz 40 mels (--config and section.key=value set any field)")
    assert out[-2].startswith("training stopped: all 2 epochs done: ")
    assert out[-1].startswith("done: ") and out[-1].endswith(f"checkpoints in {exp}")
    assert json.loads(results.read_text())["training"]["runs"] == 1
    resume = ["train", "--out-dir", str(exp), "--resume", "--results", str(results)]
    assert main([*resume, "train.epochs=3"]) == 0
    assert json.loads(results.read_text())["training"]["runs"] == 2
    capsys.readouterr()
    assert main(["transcribe", "--model", str(exp / "best.pt"), str(wavs[0])]) == 0
    assert capsys.readouterr().out.startswith(f"{wavs[0]}\t")


def test_train_names_what_is_missing(tmp_path, capsys):
    write_recordings(tmp_path / "recordings", takes=1)
    data = tmp_path / "data"
    prepare = ["prepare", "folder", str(tmp_path / "recordings"), "--out-dir", str(data)]
    assert main([*prepare, "--dev-fraction", "0", "--test-fraction", "0"]) == 0
    capsys.readouterr()
    exp = str(tmp_path / "exp")
    assert main(["train", "--data", str(data), "--out-dir", exp]) == 1
    assert capsys.readouterr().err == (
        f"asr: error: {data / 'dev.jsonl'}: no such manifest; training measures its WER to keep "
        "the best checkpoint: prepare the data again with a --dev-fraction above 0, or give "
        "data.dev_manifest=FILE\n"
    )
    assert main(["train", "--data", str(tmp_path), "--out-dir", exp]) == 1
    assert capsys.readouterr().err == (
        f"asr: error: {tmp_path / 'train.jsonl'}: no such manifest (`asr prepare "
        f"folder|csv|kaldi SOURCE --out-dir {tmp_path}` writes train.jsonl and dev.jsonl there)\n"
    )
    assert main(["train", "--out-dir", exp]) == 1  # neither --data nor --config nor manifests
    assert capsys.readouterr().err == (
        "asr: error: data.train_manifest is not set: give --data DIR (where `asr prepare` wrote "
        "train.jsonl and dev.jsonl) or data.train_manifest=FILE\n"
    )
    assert main(["train", "--data", str(data), "--out-dir", exp, "--resume"]) == 1
    assert "--data cannot be combined with --resume" in capsys.readouterr().err


def test_version_and_model_help(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out == f"asr {version('rnn-asr')}\n"
    for command, onnx in [("transcribe", True), ("evaluate", True), ("tune-decoder", False)]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert ("or a model (.onnx) written by `asr export`" in text) == onnx, command


def test_console_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "asr.cli", "transcribe", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--format" in out and "FILE_OR_DIR" in out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["train", "--out-dir", "e", "--resume", "train.epochs=3"],
            {"overrides": ["train.epochs=3"]},
        ),
        (["transcribe", "--model", "m.pt", "a.wav"], {"batch_seconds": 200.0, "format": "text"}),
        (["evaluate", "--model", "m.pt", "--manifest", "t.jsonl"], {"lm": None, "device": "auto"}),
        (
            ["tune-decoder", "--model", "m.pt", "--manifest", "d.jsonl", "--lexicon", "w.txt"],
            {"lm_weights": "0,0.25,0.5,1,1.5,2,3", "word_scores": "-3,-2,-1,0,1,2"},
        ),
        (["lm", "build", "--text", "t.txt", "--out", "lm"], {"order": 3, "unit": "word"}),
        (["lm", "install-kenlm"], {"cache_dir": None}),
        (["prepare", "fsdd", "--out-dir", "d"], {"dataset_args": ["--out-dir", "d"]}),
    ],
)
def test_every_subcommand_keeps_its_flags_and_defaults(argv, expected):
    from asr.cli import build_parser

    args = vars(build_parser().parse_args(argv))
    assert {key: args[key] for key in expected} == expected


def test_building_the_parser_imports_no_dataset_module():
    """`asr prepare` loads a dataset's module only when that dataset is asked for."""
    code = "import sys; from asr.cli import build_parser; build_parser(); "
    code += "print(sorted(m for m in sys.modules if m.startswith('data_prep')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _words_file(tmp_path: Path) -> Path:
    from tests.conftest import TEXTS

    words = sorted({w for text in TEXTS for w in text.split()})
    path = tmp_path / "words.txt"
    path.write_text("\n".join(words) + "\n")
    return path


def _unigram_arpa(path: Path, words: list[str]) -> Path:
    """Uniform word unigrams (log10) and one bigram (KenLM needs order 2 or more): enough to
    drive the decoder."""
    vocab = ["<s>", "</s>", "<unk>", *words]
    p = -np.log10(len(vocab) - 1)
    lines = ["", "\\data\\", f"ngram 1={len(vocab)}", "ngram 2=1", "", "\\1-grams:"]
    lines += [f"{-99 if w == '<s>' else p:.4f}\t{w}\t0" for w in vocab]
    lines += ["", "\\2-grams:", f"{p:.4f}\t<s> {words[0]}"]
    path.write_text("\n".join([*lines, "", "\\end\\", ""]))
    return path


def test_transcribe_with_lexicon_json_words_and_nbest(trained, tmp_path, capsys):
    model, manifest = trained
    utts = read_manifest(manifest)
    words_file = _words_file(tmp_path)
    lexicon = set(words_file.read_text().split())
    args = ["transcribe", "--model", str(model), "--lexicon", str(words_file), "--format", "json"]
    assert main([*args, "--nbest", "3", *(u.audio_filepath for u in utts)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in rows] == [u.audio_filepath for u in utts]
    for row, utt in zip(rows, utts, strict=True):
        assert set(row["text"].split()) <= lexicon
        assert [w["word"] for w in row["words"]] == row["text"].split()
        times = [t for w in row["words"] for t in (w["start"], w["end"])]
        assert times == sorted(times) and times[0] >= 0 and times[-1] <= utt.duration + 0.05
        assert all(0 <= w["confidence"] <= 1 for w in row["words"])
        assert row["nbest"][0]["text"] == row["text"] and 1 <= len(row["nbest"]) <= 3
        scores = [n["score"] for n in row["nbest"]]
        assert scores == sorted(scores, reverse=True)


def test_transcribe_subtitles(trained, tmp_path, capsys):
    import srt
    import webvtt

    model, manifest = trained
    utts = read_manifest(manifest)[:3]
    files = [u.audio_filepath for u in utts]
    base = ["transcribe", "--model", str(model)]
    assert main([*base, "--format", "srt", *files]) == 1  # several files need --out-dir
    assert "needs --out-dir" in capsys.readouterr().err
    out_dir = tmp_path / "subs"
    assert main([*base, "--format", "srt", "--out-dir", str(out_dir), *files]) == 0
    capsys.readouterr()
    assert main([*base, *files]) == 0
    texts = [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()]
    for f, text in zip(files, texts, strict=True):
        cues = list(srt.parse((out_dir / (Path(f).stem + ".srt")).read_text()))
        assert " ".join(c.content for c in cues) == text
    assert main([*base, "--format", "vtt", files[0]]) == 0
    captions = webvtt.from_string(capsys.readouterr().out, strict=True)
    assert " ".join(c.text for c in captions) == texts[0]


def test_transcribe_refuses_inconsistent_options(trained, tmp_path, capsys):
    model, manifest = trained
    wav = read_manifest(manifest)[0].audio_filepath
    assert main(["transcribe", "--model", str(model), "--nbest", "2", wav]) == 1
    assert "--nbest needs beam search" in capsys.readouterr().err
    assert main(["transcribe", "--model", str(model), "--lm-weight", "1", wav]) == 1
    assert "--lm-weight and --word-score need --lm" in capsys.readouterr().err
    assert main(["transcribe", "--model", str(model), "--beam-size", "8", wav]) == 1
    err = capsys.readouterr().err
    assert "--beam-size needs --lm or --lexicon (without them, decoding is greedy)" in err
    missing = tmp_path / "missing.arpa"
    assert main(["transcribe", "--model", str(model), "--lm", str(missing), wav]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(missing) in err


def test_tune_decoder_stores_values_used_by_transcribe(trained, tmp_path, capsys):
    import shutil

    from asr.checkpoint import load_checkpoint

    model, manifest = trained
    model_copy = tmp_path / "model.pt"
    shutil.copy(model, model_copy)
    words_file = _words_file(tmp_path)
    lm = _unigram_arpa(tmp_path / "words.arpa", words_file.read_text().split())
    args = ["tune-decoder", "--model", str(model_copy), "--manifest", str(manifest)]
    args += ["--lm", str(lm), "--lexicon", str(words_file), "--lm-weights", "0,0.5"]
    assert main([*args, "--word-scores", "0,1", "--beam-size", "8"]) == 0
    assert "best: lm_weight" in capsys.readouterr().out
    (tuned,) = load_checkpoint(model_copy)["decoders"]
    assert len(tuned["grid"]) == 4 and tuned["beam_size"] == 8
    assert tuned["dev_wer"] == min(g["wer"] for g in tuned["grid"])
    wav = read_manifest(manifest)[0].audio_filepath
    base = ["transcribe", "--model", str(model_copy), "--lexicon", str(words_file), wav]
    assert main([*base, "--lm", str(lm)]) == 0
    assert "not tuned" not in capsys.readouterr().err  # the stored values apply
    other = _unigram_arpa(tmp_path / "other.arpa", ["a", "b"])
    assert main([*base, "--lm", str(other)]) == 0
    assert "not tuned for" in capsys.readouterr().err  # a different LM: said so
    # Tuning a second LM keeps the first one's values: each LM decodes with its own.
    other_args = [*args[:5], "--lm", str(other), *args[7:9], "--lm-weights", "1.5"]
    assert main([*other_args, "--word-scores", "-1", "--beam-size", "4"]) == 0
    first, second = load_checkpoint(model_copy)["decoders"]
    assert first == tuned and (second["lm_weight"], second["beam_size"]) == (1.5, 4)
    assert main(["tune-decoder", *args[1:], "--word-scores", "0", "--beam-size", "8"]) == 0
    second_again, first_again = load_checkpoint(model_copy)["decoders"]  # re-tuned: replaced
    assert second_again == second and first_again["grid"] == tuned["grid"][::2]
    for lm_path in (lm, other):
        assert main([*base, "--lm", str(lm_path)]) == 0
        assert "not tuned" not in capsys.readouterr().err
