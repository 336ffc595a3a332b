"""load_config: YAML sections, command-line overrides, type coercion and errors."""

from __future__ import annotations

import re

import pytest
import yaml

from asr.config import (
    ConfigError,
    ExperimentConfig,
    config_for_data,
    describe_run,
    from_dict,
    load_config,
    to_dict,
)
from asr.data import Utterance, read_manifest, write_manifest
from tests.conftest import make_tone_corpus

YAML = """\
data:
  train_manifest: data/train.jsonl
  batch_seconds: 60          # int in the file, float field
features:
  n_mels: 40
  f_max: 7600
  normalize_level: false
model:
  rnn_type: lstm
  hidden_size: 128.0         # a whole float for an int field
  bidirectional: "no"
train:
  lr: 3e-4                   # PyYAML reads this as a string
  epochs: "12"
wave_augment:
  gain_db: [-6, 6]
  speed_factors: [0.9, 1.1]
"""


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_without_a_file():
    assert load_config(None) == ExperimentConfig()


def test_yaml_values_are_coerced_to_field_types(tmp_path):
    cfg = load_config(write(tmp_path, YAML))
    assert cfg.data.train_manifest == "data/train.jsonl"
    assert cfg.data.batch_seconds == 60.0 and isinstance(cfg.data.batch_seconds, float)
    assert cfg.features.n_mels == 40
    assert cfg.features.f_max == 7600.0 and isinstance(cfg.features.f_max, float)
    assert cfg.features.normalize_level is False
    assert cfg.model.rnn_type == "lstm"
    assert cfg.model.hidden_size == 128 and isinstance(cfg.model.hidden_size, int)
    assert cfg.model.bidirectional is False
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 12 and isinstance(cfg.train.epochs, int)
    assert cfg.wave_augment.gain_db == (-6.0, 6.0)
    assert cfg.wave_augment.speed_factors == [0.9, 1.1]
    # Untouched fields keep their defaults.
    assert cfg.model.num_layers == ExperimentConfig().model.num_layers
    assert cfg.data.dev_manifest == ""


def test_overrides_win_over_the_file(tmp_path):
    cfg = load_config(
        write(tmp_path, YAML),
        [
            "features.f_max=null",
            "model.hidden_size=64",
            "train.lr=0.01",
            "train.spec_augment=false",
            "model.rnn_type=gru",
            "data.dev_manifest=dev.jsonl",
            "wave_augment.snr_db=[5, 20]",
        ],
    )
    assert cfg.features.f_max is None
    assert cfg.model.hidden_size == 64
    assert cfg.train.lr == 0.01
    assert cfg.train.spec_augment is False
    assert cfg.model.rnn_type == "gru"
    assert cfg.data.dev_manifest == "dev.jsonl"
    assert cfg.wave_augment.snr_db == (5.0, 20.0)
    assert cfg.features.n_mels == 40  # from the file, not overridden


@pytest.mark.parametrize(
    ("override", "hint"),
    [
        ("model.hidden_size=12.5", "expected int"),
        ("model.hidden_size=big", "expected int"),
        ("train.lr=fast", "expected float"),
        ("features.normalize_level=maybe", "expected true or false"),
        ("wave_augment.gain_db=3", "expected a list"),
    ],
)
def test_bad_values_are_named(override, hint):
    with pytest.raises(ConfigError, match=hint) as err:
        load_config(None, [override])
    assert override.split("=")[0] in str(err.value)


@pytest.mark.parametrize("override", ["model.num_layers=true", "train.lr=false"])
def test_booleans_are_not_numbers(override):
    # `num_layers: yes` must not quietly become one layer.
    with pytest.raises(ConfigError, match="expected"):
        load_config(None, [override])


def test_unknown_section_in_file_is_named(tmp_path):
    path = write(tmp_path, "modle:\n  hidden_size: 3\n")
    with pytest.raises(ConfigError, match="unknown section 'modle'") as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_unknown_key_in_file_is_named(tmp_path):
    path = write(tmp_path, "model:\n  hiden_size: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key model\.hiden_size") as err:
        load_config(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trian.lr=0.1", "unknown section 'trian'"),
        ("train.learning_rate=0.1", r"unknown key train\.learning_rate"),
        ("features.hop_length=80", r"unknown key features\.hop_length"),  # a property
        ("train.lr", "expected section.key=value"),
        ("lr=0.1", "expected section.key=value"),
    ],
)
def test_bad_overrides_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="section 'model' must be a mapping"):
        load_config(write(tmp_path, "model: 3\n"))
    assert load_config(write(tmp_path, "")) == ExperimentConfig()


REMOVED = re.escape(
    "this option was removed (it measured no gain: see the ablation table in recipes/an4/"
)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("train", "inter_ctc_layer", "1"),
        ("train", "inter_ctc_layer", "2"),
        ("spec_augment", "freq_warp", "0.1"),
        ("features", "utterance_cmn", "true"),
    ],
)
def test_a_removed_option_that_is_on_is_refused_in_one_line(tmp_path, section, key, value):
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"{section}.{key}={value}"])
    message = str(err.value)
    assert message.startswith(f"override '{section}.{key}={value}': {section}.{key}=")
    assert re.search(REMOVED, message) and "\n" not in message
    path = write(tmp_path, f"{section}:\n  {key}: {value}\n")
    with pytest.raises(ConfigError, match=f"^{path}: {section}.{key}=.*: {REMOVED}"):
        load_config(path)
    saved = to_dict(ExperimentConfig())
    saved[section][key] = yaml.safe_load(value)
    with pytest.raises(ConfigError, match=f"^exp/last.pt: {section}.{key}=.*: {REMOVED}"):
        from_dict(saved, "exp/last.pt")


def test_removed_options_left_off_are_passed_over(tmp_path):
    # What a checkpoint saved before their removal holds: each at its old default.
    saved = to_dict(ExperimentConfig())
    saved["train"] |= {"inter_ctc_layer": 0, "inter_ctc_weight": 0.3}
    saved["spec_augment"] |= {"freq_warp": 0.0, "freq_warp_boundary": 0.6}
    saved["features"]["utterance_cmn"] = False
    assert from_dict(saved) == ExperimentConfig()
    path = write(tmp_path, "features:\n  utterance_cmn: false\ntrain:\n  inter_ctc_layer: 0\n")
    assert load_config(path) == ExperimentConfig()


def test_bad_rnn_type_raises(tmp_path):
    with pytest.raises(ValueError, match="rnn_type"):
        load_config(write(tmp_path, "model:\n  rnn_type: transformer\n"))
    with pytest.raises(ValueError, match="rnn_type"):
        load_config(None, ["model.rnn_type=tcn"])
    with pytest.raises(ValueError, match="subsample"):
        load_config(None, ["model.subsample=3"])


STREAMING_YAML = """\
features:
  level_window_s: 3
model:
  bidirectional: false
  lookahead_frames: 2
"""


def test_a_streaming_model_config(tmp_path):
    cfg = load_config(write(tmp_path, STREAMING_YAML))
    assert cfg.features.level_window_s == 3.0 and cfg.features.streamable
    assert (cfg.model.bidirectional, cfg.model.lookahead_frames) == (False, 2)
    assert describe_run(cfg).startswith("3 x 256 GRU left-to-right, lookahead 2 (subsample 2)")
    assert not ExperimentConfig().features.streamable  # the default: each utterance's level


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("model:\n  lookahead_frames: 2\n", [], "model config: lookahead_frames needs a left"),
        (STREAMING_YAML, ["model.bidirectional=true"], "bidirectional: false"),
        (STREAMING_YAML, ["features.level_window_s=-0.5"], "features config: level_window_s"),
    ],
    ids=["lookahead-bidirectional", "made-bidirectional", "negative-window"],
)
def test_a_lookahead_on_a_bidirectional_model_or_a_negative_level_window_is_refused(
    tmp_path, text, overrides, message
):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(write(tmp_path, text), overrides)
    assert "\n" not in str(err.value)


def test_dict_round_trip(tmp_path):
    cfg = load_config(write(tmp_path, YAML), ["features.f_max=null"])
    assert from_dict(to_dict(cfg)) == cfg


def test_an_empty_value_empties_a_text_field():
    cfg = load_config(None, ["data.dev_manifest=", "data.bpe_model="])
    assert cfg.data.dev_manifest == "" and cfg.data.bpe_model == ""  # not "None"


def test_config_for_data_sizes_the_run_to_the_audio(tmp_path):
    # a few seconds of 8 kHz audio: the smallest settings, and 8 kHz features
    utts = read_manifest(make_tone_corpus(tmp_path / "tones"))
    data = tmp_path / "data"
    write_manifest(data / "train.jsonl", utts)
    cfg, note = config_for_data(data)
    assert cfg.data.train_manifest == str(data / "train.jsonl") and cfg.data.dev_manifest == ""
    m = cfg.model
    assert (m.num_layers, m.hidden_size, m.subsample, cfg.train.epochs) == (1, 64, 4, 40)
    assert (cfg.features.sample_rate, cfg.features.n_mels) == (8000, 40)
    seconds = sum(u.duration for u in utts)
    batch = round(max(seconds / 20, max(u.duration for u in utts)), 1)
    assert cfg.data.batch_seconds == batch
    minutes = f"{seconds / 60:.1f} min"
    assert note == f"{data / 'train.jsonl'}: 12 utterances, {minutes}: sized for under 0.25 h"
    assert describe_run(cfg) == (
        f"1 x 64 GRU (subsample 4), 40 epochs, lr 0.01, batches of {batch:g} s, 8000 Hz 40 mels"
    )
    # 10 hours (the audio is not on disk: the default sample rate stays), and a dev manifest
    ten_hours = [Utterance(str(tmp_path / f"{i}.wav"), 100.0, "a") for i in range(360)]
    write_manifest(data / "train.jsonl", ten_hours)
    write_manifest(data / "dev.jsonl", ten_hours[:10])
    cfg, note = config_for_data(data)
    assert cfg.data.dev_manifest == str(data / "dev.jsonl")
    assert (cfg.model.num_layers, cfg.model.hidden_size, cfg.train.epochs) == (4, 512, 40)
    assert (cfg.data.batch_seconds, cfg.features.sample_rate, cfg.features.n_mels) == (
        300.0,
        16000,
        80,
    )
    assert note.endswith(": 360 utterances, 10.00 h: sized for under 20 h")
    write_manifest(data / "train.jsonl", [Utterance("long.wav", 3600.0, "a")] * 500)
    cfg, note = config_for_data(data)
    assert (cfg.model.rnn_type, cfg.model.num_layers, cfg.model.hidden_size) == ("lstm", 5, 1024)
    assert note.endswith(": 500 utterances, 500.00 h: sized for 200 h or more")


def test_sized_settings_give_way_to_a_config_file_and_overrides(tmp_path):
    data = tmp_path / "data"
    write_manifest(data / "train.jsonl", read_manifest(make_tone_corpus(tmp_path / "tones")))
    base, _ = config_for_data(data)
    cfg = load_config(write(tmp_path, "model:\n  hidden_size: 32\n"), ["train.epochs=3"], base)
    assert (cfg.model.hidden_size, cfg.train.epochs, cfg.model.num_layers) == (32, 3, 1)


def test_config_for_data_names_a_missing_train_manifest(tmp_path):
    with pytest.raises(ConfigError) as err:
        config_for_data(tmp_path)
    assert str(err.value) == (
        f"{tmp_path / 'train.jsonl'}: no such manifest (`asr prepare folder|csv|kaldi SOURCE "
        f"--out-dir {tmp_path}` writes train.jsonl and dev.jsonl there)"
    )
