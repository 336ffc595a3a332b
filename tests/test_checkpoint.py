"""Checkpoints: save/load round trip rebuilds the same recogniser; errors; atomic save."""

from __future__ import annotations

import os
import zipfile
from dataclasses import asdict

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.checkpoint import CheckpointError, load_checkpoint, recogniser_from_state, save_checkpoint
from asr.features import FeatureConfig
from asr.model import ModelConfig, Recogniser
from asr.tokenizers import CharTokenizer


def make_state() -> tuple[dict, Recogniser, CharTokenizer]:
    torch.manual_seed(0)
    tok = CharTokenizer.from_texts(["hello world", "it's me"])
    fc = FeatureConfig(n_mels=20, f_max=7000.0, normalize_level=False)
    mc = ModelConfig(
        n_mels=20, vocab_size=tok.vocab_size, conv_channels=4, hidden_size=8, num_layers=2
    )
    model = Recogniser(fc, mc)
    # Non-default CMVN and BatchNorm statistics must travel with the weights.
    model.features.cmvn_mean.copy_(torch.linspace(-5, 5, 20))
    model.features.cmvn_std.copy_(torch.linspace(1, 3, 20))
    model.train()
    with torch.no_grad():
        model(torch.randn(3, 4000), torch.tensor([4000, 3000, 2000]))  # updates BN running stats
    model.eval()
    state = {
        "config": {"features": asdict(fc), "model": asdict(mc)},
        "tokenizer": tok.state_dict(),
        "model": model.state_dict(),
    }
    return state, model, tok


def test_round_trip_gives_identical_outputs(tmp_path):
    state, model, tok = make_state()
    path = tmp_path / "exp" / "best.pt"  # the folder is created
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded["version"] == 1
    again, tok2 = recogniser_from_state(loaded)
    assert not again.training
    assert tok2.tokens == tok.tokens
    assert again.features.cfg == model.features.cfg
    assert again.acoustic.cfg == model.acoustic.cfg
    wavs = torch.randn(2, 6000) * 0.1
    wav_lens = torch.tensor([6000, 4100])
    with torch.no_grad():
        expected, expected_lens = model(wavs, wav_lens)
        got, got_lens = again(wavs, wav_lens)
    assert torch.equal(got_lens, expected_lens)
    assert torch.equal(got, expected)
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint at all", bytes(range(256)) * 4],
    ids=["empty", "text", "bin"],
)
def test_garbage_file_is_named(tmp_path, content):
    path = tmp_path / "garbage.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "none.pt"
    with pytest.raises(CheckpointError, match="no such checkpoint") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_foreign_torch_file_is_rejected(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, path)  # a torch file, but not one of ours
    with pytest.raises(CheckpointError, match="not a checkpoint of this toolkit") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_pickled_objects_are_refused(tmp_path):
    # weights_only=True: a file holding arbitrary Python objects is not loaded.
    path = tmp_path / "evil.pt"
    torch.save({"version": 1, "obj": CharTokenizer(["a"])}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == (
        f"{path}: not a readable checkpoint: it holds Python objects "
        "(asr.tokenizers.CharTokenizer), which are not loaded for safety (a checkpoint holds "
        "only tensors and plain data)"
    )


def test_a_folder_is_named_with_the_checkpoints_it_holds(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(exp)
    assert str(err.value) == f"{exp}: a folder, not a checkpoint; it holds no .pt file"
    state, _, _ = make_state()
    for name in ("last.pt", "best.pt"):
        save_checkpoint(exp / name, state)
    (exp / "history.jsonl").write_text("{}\n")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(exp)
    assert str(err.value) == f"{exp}: a folder, not a checkpoint; it holds best.pt, last.pt"


def test_files_of_other_kinds_are_named_not_a_checkpoint(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  hidden_size: 64\n")
    wav = tmp_path / "speech.wav"
    sf.write(wav, np.zeros(800, dtype=np.float32), 8000)
    archive = tmp_path / "notes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("notes.txt", "hello")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    expected = {
        config: f"{config}: not a checkpoint (a text file)",
        wav: f"{wav}: not a checkpoint (WAV audio)",
        archive: f"{archive}: not a checkpoint (a zip archive, not a PyTorch file)",
        empty: f"{empty}: an empty file, not a checkpoint",
    }
    for path, message in expected.items():
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        assert str(err.value) == message
        assert "weights_only" not in str(err.value)


def test_truncated_checkpoint_says_truncated(tmp_path):
    state, _, _ = make_state()
    path = tmp_path / "best.pt"
    save_checkpoint(path, state)
    whole = path.read_bytes()
    for size in (100, len(whole) // 2, len(whole) - 10):
        path.write_bytes(whole[:size])
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        assert str(err.value) == (
            f"{path}: truncated checkpoint (the file ends before its index: an interrupted copy "
            "or write)"
        )


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask022", "umask077"])
def test_checkpoints_get_the_mode_of_other_outputs(tmp_path, umask):
    state, _, _ = make_state()
    old = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "best.pt", state)
        (tmp_path / "other.txt").write_text("an output written with open()")
    finally:
        os.umask(old)
    mode = (tmp_path / "best.pt").stat().st_mode & 0o777
    assert mode == (tmp_path / "other.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    state, _, _ = make_state()
    path = tmp_path / "last.pt"
    save_checkpoint(path, state)
    save_checkpoint(path, {**state, "progress": {"epoch": 2}})  # overwrite in place
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert load_checkpoint(path)["progress"] == {"epoch": 2}


def test_failed_save_keeps_the_old_file_and_no_temp_files(tmp_path):
    state, _, _ = make_state()
    path = tmp_path / "last.pt"
    save_checkpoint(path, state)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - whatever torch.save raises for a lambda
        save_checkpoint(path, {**state, "bad": lambda: None})
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert path.read_bytes() == before


def test_future_version_says_upgrade(tmp_path):
    state, _, _ = make_state()
    path = tmp_path / "new.pt"
    torch.save({**state, "version": 2}, path)
    with pytest.raises(CheckpointError, match="newer version of this toolkit") as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: ") and "version 2" in str(err.value)


def test_weights_of_another_shape_or_vocabulary_are_named(tmp_path):
    state, _, tok = make_state()
    shaped = {**state, "config": {**state["config"], "model": dict(state["config"]["model"])}}
    shaped["config"]["model"]["hidden_size"] = 12  # the weights are of hidden size 8
    path = tmp_path / "shape.pt"
    save_checkpoint(path, shaped)
    with pytest.raises(CheckpointError, match="weights do not fit the model") as err:
        recogniser_from_state(load_checkpoint(path))
    assert str(err.value).startswith(f"{path}: ")
    other = CharTokenizer.from_texts(["a different alphabet: xyz!"])
    path = tmp_path / "vocab.pt"
    save_checkpoint(path, {**state, "tokenizer": other.state_dict()})
    with pytest.raises(CheckpointError) as err:
        recogniser_from_state(load_checkpoint(path))
    assert str(err.value) == (
        f"{path}: its tokenizer has {other.vocab_size} units but the model has "
        f"{tok.vocab_size} outputs (a tokenizer from another model?)"
    )
    path = tmp_path / "nomodel.pt"
    save_checkpoint(path, {"config": state["config"], "tokenizer": state["tokenizer"]})
    with pytest.raises(CheckpointError, match=r"not a model checkpoint \(no 'model' in it\)"):
        recogniser_from_state(load_checkpoint(path))
    path = tmp_path / "config.pt"
    odd = {**state["config"], "model": {**state["config"]["model"], "attention_heads": 4}}
    save_checkpoint(path, {**state, "config": odd})
    with pytest.raises(CheckpointError, match="model config of another version"):
        recogniser_from_state(load_checkpoint(path))


def test_a_removed_feature_option_is_passed_over_when_off_and_named_when_on(tmp_path):
    state, model, _ = make_state()
    features = state["config"]["features"]
    # What checkpoints written before features.utterance_cmn was removed hold.
    older = {
        **state,
        "config": {**state["config"], "features": {**features, "utterance_cmn": False}},
    }
    path = tmp_path / "older.pt"
    save_checkpoint(path, older)
    again, _ = recogniser_from_state(load_checkpoint(path))
    assert again.features.cfg == model.features.cfg
    on = {**state, "config": {**state["config"], "features": {**features, "utterance_cmn": True}}}
    path = tmp_path / "cmn.pt"
    save_checkpoint(path, on)
    with pytest.raises(CheckpointError) as err:
        recogniser_from_state(load_checkpoint(path))
    assert str(err.value) == (
        f"{path}: features.utterance_cmn=True: this option was removed (it measured no gain: "
        "see the ablation table in recipes/an4/RESULTS.md)"
    )
