"""ONNX export: onnxruntime gives PyTorch's log-probs on padded batches, and a .onnx model
transcribes like its checkpoint (greedy, word times, beam search with lexicon + LM)."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime (the onnx extra) is not installed")
pytest.importorskip("onnx", reason="onnx (the onnx extra) is not installed")

import asr.export
from asr.checkpoint import CheckpointError, save_checkpoint
from asr.cli import main
from asr.data import SpeechDataset, collate, read_manifest
from asr.export import export_onnx, load_onnx
from asr.features import FeatureConfig
from asr.model import ModelConfig, Recogniser
from asr.tokenizers import CharTokenizer
from asr.transcribe import Transcriber
from tests.conftest import TEXTS, make_tone_corpus

SAMPLE_RATE = 8000
TOLERANCE = 1e-4


def _save_random_model(
    path: Path,
    model_cfg: ModelConfig,
    feature_cfg: FeatureConfig | None = None,
    tokenizer=None,
    cmvn_from: Path | None = None,
    decoder: dict | None = None,
) -> Recogniser:
    """A randomly initialised recogniser saved as a checkpoint; CMVN statistics from the
    manifest `cmvn_from`, else random. The output layer is scaled up so that greedy decoding
    gives varied text instead of blanks only; a lookahead's weights are random too."""
    torch.manual_seed(0)
    feature_cfg = feature_cfg or FeatureConfig(sample_rate=SAMPLE_RATE, n_mels=model_cfg.n_mels)
    tokenizer = tokenizer or CharTokenizer.from_texts(TEXTS)
    model_cfg = replace(model_cfg, vocab_size=tokenizer.vocab_size)
    model = Recogniser(feature_cfg, model_cfg)
    if cmvn_from is not None:
        data = SpeechDataset(read_manifest(cmvn_from), None, SAMPLE_RATE)
        batch = collate([data[i] for i in range(len(data))])
        model.features.fit_cmvn([(batch["wavs"], batch["wav_lens"])])
    else:
        model.features.cmvn_mean.normal_()
        model.features.cmvn_std.uniform_(0.5, 2.0)
    with torch.no_grad():
        model.acoustic.output.weight.mul_(4.0)
        if model.acoustic.lookahead is not None:  # (it starts as the identity)
            model.acoustic.lookahead.weight.normal_()
    model.eval()
    state = {
        "config": {"features": asdict(feature_cfg), "model": asdict(model_cfg)},
        "tokenizer": tokenizer.state_dict(),
        "model": model.state_dict(),
    }
    if decoder is not None:
        state["decoder"] = decoder
    save_checkpoint(path, state)
    return model


def _padded_batch(seconds: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy chirps of these durations, zero-padded: (B, S), (B,)."""
    rng = np.random.default_rng(1)
    lens = [int(s * SAMPLE_RATE) for s in seconds]
    wavs = torch.zeros(len(lens), max(lens))
    for b, n in enumerate(lens):
        t = np.arange(n) / SAMPLE_RATE
        wav = 0.3 * np.sin(2 * np.pi * (300 + 400 * b + 500 * t) * t)  # a rising tone
        wav += 0.01 * rng.standard_normal(n)
        wavs[b, :n] = torch.from_numpy(wav.astype(np.float32))
    return wavs, torch.tensor(lens)


# (model, feature options) of every shape the front-end and recurrent stack can take
SHAPES = {
    "gru-sub2": (ModelConfig(n_mels=20, conv_channels=4, subsample=2), {}),
    "lstm-sub4": (ModelConfig(n_mels=20, rnn_type="lstm", conv_channels=4, subsample=4), {}),
    "rnn-left-to-right-no-conv": (
        ModelConfig(n_mels=16, rnn_type="rnn", conv_channels=0, subsample=1, bidirectional=False),
        {"normalize_level": False},
    ),
    "gru-left-to-right-lookahead-running-level": (
        ModelConfig(
            n_mels=20, conv_channels=4, subsample=2, bidirectional=False, lookahead_frames=2
        ),
        {"level_window_s": 0.3},
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_onnx_matches_pytorch_on_a_padded_batch(tmp_path, shape):
    model_cfg, feature_options = SHAPES[shape]
    model_cfg = replace(model_cfg, hidden_size=12, num_layers=2)
    feature_cfg = FeatureConfig(sample_rate=SAMPLE_RATE, n_mels=model_cfg.n_mels, **feature_options)
    model = _save_random_model(tmp_path / "m.pt", model_cfg, feature_cfg)
    assert export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx") <= TOLERANCE
    runner, _, _ = load_onnx(tmp_path / "m.onnx")
    # Longer than the trace's probe batch (1 s) and in another order: the axes are dynamic.
    wavs, lens = _padded_batch([0.31, 1.73, 0.9])
    with torch.no_grad():
        expected, expected_lens = model(wavs, lens)
    got, got_lens = runner.log_probs(wavs, lens)
    assert got.shape == expected.shape and torch.equal(got_lens, expected_lens)
    for b, n in enumerate(expected_lens.tolist()):
        assert (got[b, :n] - expected[b, :n]).abs().max() <= TOLERANCE
        # Alone, without the padding, each utterance gets the same output as in the batch.
        alone, alone_len = runner.log_probs(wavs[b : b + 1, : lens[b]], lens[b : b + 1])
        assert alone.shape[1] == alone_len.item() == n
        assert (alone[0] - got[b, :n]).abs().max() <= 1e-5
        assert (alone[0] - expected[b, :n]).abs().max() <= TOLERANCE


def test_metadata_carries_a_bpe_tokenizer_and_tuned_decoder_values(tmp_path):
    pytest.importorskip("sentencepiece", reason="sentencepiece (the bpe extra) is not installed")
    from asr.tokenizers import BpeTokenizer

    tokenizer = BpeTokenizer.train([*TEXTS, "ab ba cab abc"] * 5, vocab_size=12)
    tuned = {"lm_sha256": "ab" * 32, "lm_weight": 0.75, "word_score": -1.0, "beam_size": 8}
    model_cfg = ModelConfig(n_mels=20, hidden_size=8, num_layers=1, conv_channels=4)
    _save_random_model(tmp_path / "m.pt", model_cfg, tokenizer=tokenizer, decoder=tuned)
    export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    runner, onnx_tokenizer, meta = load_onnx(tmp_path / "m.onnx")
    assert isinstance(onnx_tokenizer, BpeTokenizer)
    assert onnx_tokenizer.model_proto == tokenizer.model_proto  # bytes, through base64
    assert onnx_tokenizer.encode("cab ba") == tokenizer.encode("cab ba")
    assert meta["decoders"] == [tuned]  # a checkpoint of the earlier one-LM format
    assert runner.feature_cfg == FeatureConfig(sample_rate=SAMPLE_RATE, n_mels=20)
    assert runner.model_cfg == replace(model_cfg, vocab_size=tokenizer.vocab_size)
    # The transcriber takes the frame rate and the sample rate from the metadata.
    transcriber = Transcriber.from_checkpoint(tmp_path / "m.onnx")
    assert transcriber.sample_rate == SAMPLE_RATE
    assert transcriber.frame_seconds == pytest.approx(0.02)


def _arpa(path: Path, words: list[str]) -> Path:
    """A uniform word unigram LM with one bigram (KenLM wants order 2 or more)."""
    vocab = ["<s>", "</s>", "<unk>", *words]
    p = -np.log10(len(vocab) - 1)
    lines = ["", "\\data\\", f"ngram 1={len(vocab)}", "ngram 2=1", "", "\\1-grams:"]
    lines += [f"{-99 if w == '<s>' else p:.4f}\t{w}\t0" for w in vocab]
    lines += ["", "\\2-grams:", f"{p:.4f}\t<s> {words[0]}", "", "\\end\\", ""]
    path.write_text("\n".join(lines))
    return path


def _cli_output(capsys, argv: list[str]) -> str:
    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_onnx_model_transcribes_like_its_checkpoint(tmp_path, capsys):
    manifest = make_tone_corpus(tmp_path / "tones", SAMPLE_RATE)
    files = [u.audio_filepath for u in read_manifest(manifest)]
    pt, onnx = tmp_path / "m.pt", tmp_path / "m.onnx"
    model_cfg = ModelConfig(n_mels=24, hidden_size=24, num_layers=2, conv_channels=0, subsample=1)
    _save_random_model(pt, model_cfg, cmvn_from=manifest)
    argv = ["export", "--model", str(pt), "--format", "onnx", "--out", str(onnx)]
    out = _cli_output(capsys, argv)
    assert out.startswith(f"wrote {onnx}")

    greedy = _cli_output(capsys, ["transcribe", "--model", str(pt), *files])
    assert _cli_output(capsys, ["transcribe", "--model", str(onnx), *files]) == greedy
    texts = [line.split("\t")[1] for line in greedy.splitlines()]
    assert len(set(texts)) > 2, texts  # varied text: the comparison means something

    # Word timestamps (JSON) come from the same log-probs.
    timed = [*files[:4], "--format", "json"]
    as_pt = _cli_output(capsys, ["transcribe", "--model", str(pt), *timed])
    as_onnx = _cli_output(capsys, ["transcribe", "--model", str(onnx), *timed])
    for a, b in zip(as_pt.splitlines(), as_onnx.splitlines(), strict=True):
        a, b = json.loads(a), json.loads(b)
        assert a["text"] == b["text"] and len(a["words"]) == len(b["words"])
        for wa, wb in zip(a["words"], b["words"], strict=True):
            assert (wa["word"], wa["start"], wa["end"]) == (wb["word"], wb["start"], wb["end"])
            assert wa["confidence"] == pytest.approx(wb["confidence"], abs=2e-3)

    # Beam search with a lexicon and a word LM, through the library this time.
    words = sorted({w for text in TEXTS for w in text.split()})
    (tmp_path / "words.txt").write_text("\n".join(words) + "\n")
    beam = {"lexicon": tmp_path / "words.txt", "lm": _arpa(tmp_path / "lm.arpa", words)}
    options = {"decoder_options": {"beam_size": 8, "lm_weight": 0.5, "word_score": 0.0}}
    a = Transcriber.from_checkpoint(pt, device="cpu", **beam, **options)
    b = Transcriber.from_checkpoint(onnx, **beam, **options)
    assert b.decoder is not None
    beam_pt = [r.text for r in sorted(a.transcribe_files(files), key=lambda r: r.path)]
    beam_onnx = [r.text for r in sorted(b.transcribe_files(files), key=lambda r: r.path)]
    assert beam_onnx == beam_pt and any(beam_pt), beam_pt
    assert all(w in words for text in beam_pt for w in text.split())


def test_a_removed_feature_option_in_older_metadata(tmp_path):
    """An export that records a since-removed option loads when the option is off, and is
    refused in one line naming the file and the option when it is on."""
    import onnx

    _save_random_model(tmp_path / "m.pt", ModelConfig(n_mels=20, hidden_size=8, num_layers=1))
    export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    (entry,) = [e for e in proto.metadata_props if e.key == asr.export.METADATA_KEY]
    meta = json.loads(entry.value)
    for value in (False, True):
        meta["config"]["features"]["utterance_cmn"] = value
        entry.value = json.dumps(meta)
        onnx.save(proto, str(tmp_path / f"cmn_{value}.onnx"))
    runner, _, _ = load_onnx(tmp_path / "cmn_False.onnx")
    assert runner.feature_cfg == FeatureConfig(sample_rate=SAMPLE_RATE, n_mels=20)
    with pytest.raises(CheckpointError) as err:
        load_onnx(tmp_path / "cmn_True.onnx")
    assert str(err.value) == (
        f"{tmp_path / 'cmn_True.onnx'}: features.utterance_cmn=True: this option was removed "
        "(it measured no gain: see the ablation table in recipes/an4/RESULTS.md)"
    )


def test_bad_models_give_one_line_errors_naming_the_file(tmp_path, capsys):
    make_tone_corpus(tmp_path / "tones", SAMPLE_RATE)
    wav = next((tmp_path / "tones").glob("*.wav"))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    # A valid ONNX graph, but not one `asr export` wrote: no metadata.
    foreign = tmp_path / "foreign.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation
        torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(foreign), dynamo=False)
    missing, wrong = tmp_path / "no.onnx", tmp_path / "x.pt"
    cases = [
        (["transcribe", "--model", str(garbage), str(wav)], f"{garbage}: not a readable ONNX"),
        (["transcribe", "--model", str(foreign), str(wav)], f"{foreign}: an ONNX model without"),
        (["transcribe", "--model", str(missing), str(wav)], f"{missing}: no such"),
        (["export", "--model", str(garbage), "--out", str(tmp_path / "x.onnx")], f"{garbage}: "),
        (["export", "--model", str(garbage), "--out", str(wrong)], f"{wrong}: "),
    ]
    for argv, start in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"asr: error: {start}") and err.count("\n") == 1, err
    assert not (tmp_path / "x.onnx").exists()


def test_export_writes_atomically_and_refuses_a_mismatch_or_a_failure(tmp_path, monkeypatch):
    _save_random_model(tmp_path / "m.pt", ModelConfig(n_mels=16, hidden_size=8, num_layers=1))
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    monkeypatch.setattr(asr.export, "TOLERANCE", -1.0)  # every graph "mismatches"
    with pytest.raises(CheckpointError, match="not written"):
        export_onnx(tmp_path / "m.pt", out)
    assert list(out.parent.iterdir()) == []  # no file, no temporary left behind
    monkeypatch.undo()

    def exporter_fails(*args) -> None:
        raise RuntimeError("Unsupported: an operator\nmore detail")

    monkeypatch.setattr(asr.export, "_trace_to", exporter_fails)
    with pytest.raises(CheckpointError, match=r"m\.pt: cannot export to ONNX \(Unsupported"):
        export_onnx(tmp_path / "m.pt", out)
    assert list(out.parent.iterdir()) == []
    monkeypatch.undo()
    export_onnx(tmp_path / "m.pt", out)
    assert [p.name for p in out.parent.iterdir()] == ["m.onnx"]
