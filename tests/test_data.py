"""Manifests, the bucketing batch sampler, the dataset and collate."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.augment import WaveAugmentConfig
from asr.data import (
    BucketBatchSampler,
    ManifestError,
    SpeechDataset,
    Utterance,
    collate,
    read_manifest,
    write_manifest,
)
from asr.tokenizers import CharTokenizer

# ---- manifests


def test_manifest_round_trip(tmp_path):
    outside = tmp_path.parent / "elsewhere" / "c.wav"
    utts = [
        Utterance(str(tmp_path / "audio" / "a.wav"), 1.23456789, "hello world"),
        Utterance(str(tmp_path / "b.flac"), 0.5, "it's café"),
        Utterance(str(outside), 12.0, ""),
    ]
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, utts)
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    # Paths under the manifest's folder are stored relative; others stay absolute.
    assert [r["audio_filepath"] for r in rows] == ["audio/a.wav", "b.flac", str(outside)]
    assert set(rows[0]) == {"audio_filepath", "duration", "text"}
    assert "café" in manifest.read_text(encoding="utf-8")  # not escaped
    back = read_manifest(manifest)
    assert [u.audio_filepath for u in back] == [u.audio_filepath for u in utts]
    assert [u.text for u in back] == [u.text for u in utts]
    assert [u.duration for u in back] == [1.2346, 0.5, 12.0]  # 4 decimals
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_write_manifest_absolute(tmp_path):
    path = str(tmp_path / "a.wav")
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, [Utterance(path, 1.0, "a")], relative=False)
    assert json.loads(manifest.read_text())["audio_filepath"] == path


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "dev"
    folder.mkdir(parents=True)
    manifest = folder / "dev.jsonl"
    rows = [
        {"audio_filepath": "wav/1.wav", "duration": 1.0, "text": "one"},
        {"audio_filepath": "../shared/2.wav", "duration": 2, "text": "two"},
        {"audio_filepath": "/abs/3.wav", "duration": "3.5", "text": "three"},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.chdir(tmp_path)  # must not matter
    utts = read_manifest("data/dev/dev.jsonl")
    assert [os.path.normpath(u.audio_filepath) for u in utts] == [
        str(folder.resolve() / "wav" / "1.wav"),
        str(tmp_path.resolve() / "data" / "shared" / "2.wav"),
        "/abs/3.wav",
    ]
    assert [u.duration for u in utts] == [1.0, 2.0, 3.5]


GOOD = '{"audio_filepath": "a.wav", "duration": 1.0, "text": "a"}\n'


@pytest.mark.parametrize(
    ("bad_line", "cause"),
    [
        ('{"audio_filepath": "b.wav", "duration": 1.0, "text": "b"\n', "not valid JSON"),
        ('{"audio_filepath": "b.wav", "text": "b"}\n', "missing field 'duration'"),
        ('{"duration": 1.0, "text": "b"}\n', "missing field 'audio_filepath'"),
        ('{"audio_filepath": "b.wav", "duration": "long", "text": "b"}\n', "bad field value"),
        ('{"audio_filepath": "b.wav", "duration": null, "text": "b"}\n', "bad field value"),
    ],
)
def test_bad_line_is_named_by_file_and_line(tmp_path, bad_line, cause):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(GOOD + "\n" + bad_line + GOOD)  # the blank line still counts
    with pytest.raises(ManifestError) as err:
        read_manifest(manifest)
    message = str(err.value)
    assert message.startswith(f"{manifest}:3: ")
    assert cause in message


def test_missing_and_empty_manifests(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "none.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ManifestError, match="no utterances") as err:
        read_manifest(empty)
    assert str(empty) in str(err.value)


# ---- BucketBatchSampler


def durations(n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 15.0, size=n).round(2).tolist()


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_every_index_once_per_epoch(seed):
    durs = durations(300, seed)
    sampler = BucketBatchSampler(durs, max_batch_seconds=60.0, seed=seed)
    for epoch in range(4):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(300))


@pytest.mark.parametrize("shuffle", [True, False])
def test_padded_cost_stays_under_budget(shuffle):
    durs = [*durations(200, 3), 70.0, 95.5]  # two longer than the budget
    budget = 60.0
    sampler = BucketBatchSampler(durs, max_batch_seconds=budget, shuffle=shuffle)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in sampler:
            cost = len(batch) * max(durs[i] for i in batch)
            assert len(batch) == 1 or cost <= budget, (batch, cost)
    singles = [b for b in sampler.batches() if len(b) == 1]
    assert [200] in singles and [201] in singles


def test_batches_are_filled():
    # Equal durations: each batch holds exactly floor(budget / duration) utterances.
    sampler = BucketBatchSampler([2.0] * 25, max_batch_seconds=10.0, seed=0)
    assert sorted(len(b) for b in sampler) == [5] * 5


def test_max_batch_size():
    sampler = BucketBatchSampler([0.1] * 50, max_batch_seconds=1000.0, max_batch_size=8)
    sizes = [len(b) for b in sampler]
    assert max(sizes) == 8
    assert sum(sizes) == 50


def test_epochs_and_seeds_give_different_orders():
    durs = durations(200, 0)
    sampler = BucketBatchSampler(durs, max_batch_seconds=40.0, seed=0)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        orders.append(sampler.batches())
    assert orders[0] != orders[1] != orders[2] != orders[0]
    sampler.set_epoch(1)
    assert sampler.batches() == orders[1]  # deterministic for (seed, epoch)
    other = BucketBatchSampler(durs, max_batch_seconds=40.0, seed=1)
    other.set_epoch(1)
    assert other.batches() != orders[1]


def test_no_shuffle_is_sorted_by_duration():
    durs = durations(50, 4)
    sampler = BucketBatchSampler(durs, max_batch_seconds=30.0, shuffle=False)
    flat = [i for b in sampler for i in b]
    assert [durs[i] for i in flat] == sorted(durs)
    sampler.set_epoch(5)
    assert [i for b in sampler for i in b] == flat


@pytest.mark.parametrize("start_batch", [0, 1, 5])
def test_resume_mid_epoch(start_batch):
    sampler = BucketBatchSampler(durations(120, 2), max_batch_seconds=45.0, seed=3)
    sampler.set_epoch(2)
    full = sampler.batches()
    sampler.set_epoch(2, start_batch=start_batch)
    assert list(sampler) == full[start_batch:]
    assert len(sampler) == len(full) - start_batch
    sampler.set_epoch(2, start_batch=len(full) + 3)
    assert list(sampler) == []
    assert len(sampler) == 0


def test_budget_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        BucketBatchSampler([1.0], max_batch_seconds=0)


# ---- dataset and collate


def item(n_samples: int, tokens: list[int], index: int) -> dict:
    wav = torch.arange(1, n_samples + 1, dtype=torch.float32)
    return {"wav": wav, "tokens": torch.tensor(tokens, dtype=torch.long), "index": index}


def test_collate_pads_and_keeps_lengths():
    items = [item(5, [1, 2], 7), item(8, [3, 1, 4, 1], 2), item(3, [], 9)]
    batch = collate(items)
    assert batch["wavs"].shape == (3, 8)
    assert batch["wav_lens"].tolist() == [5, 8, 3]
    assert batch["tokens"].shape == (3, 4)
    assert batch["token_lens"].tolist() == [2, 4, 0]
    assert batch["indices"].tolist() == [7, 2, 9]
    assert batch["wavs"][0].tolist() == [1, 2, 3, 4, 5, 0, 0, 0]
    assert batch["wavs"][2].tolist() == [1, 2, 3, 0, 0, 0, 0, 0]
    assert batch["tokens"].tolist() == [[1, 2, 0, 0], [3, 1, 4, 1], [0, 0, 0, 0]]
    assert batch["tokens"].dtype == batch["wav_lens"].dtype == torch.long


def test_collate_without_tokens_keeps_one_column():
    batch = collate([item(4, [], 0), item(2, [], 1)])
    assert batch["tokens"].shape == (2, 1)
    assert batch["token_lens"].tolist() == [0, 0]


def test_speech_dataset_loads_and_encodes(tmp_path):
    x = (0.1 * np.sin(np.arange(8000) / 3)).astype(np.float32)
    sf.write(tmp_path / "a.wav", x, 8000, subtype="FLOAT")
    utts = [Utterance(str(tmp_path / "a.wav"), 1.0, "ab a")]
    tok = CharTokenizer.from_texts(["ab a"])
    ds = SpeechDataset(utts, tok, sample_rate=16000)
    got = ds[0]
    assert got["index"] == 0
    assert got["wav"].shape == (16000,)
    assert got["tokens"].tolist() == tok.encode("ab a") == [2, 3, 1, 2]


def test_batches_are_grouped_by_speed_perturbed_length(tmp_path):
    """The sampler batches by the lengths the dataset will load after speed perturbation."""
    rng = np.random.default_rng(0)
    utts = []
    for k in range(40):
        seconds = round(float(rng.uniform(0.3, 1.2)), 3)
        path = tmp_path / f"{k}.wav"
        sf.write(path, rng.standard_normal(int(seconds * 8000)).astype(np.float32) * 0.1, 8000)
        utts.append(Utterance(str(path), seconds, "a"))
    dataset = SpeechDataset(utts, None, 8000, WaveAugmentConfig(), seed=3)
    durs = [u.duration for u in utts]
    sampler = BucketBatchSampler(durs, max_batch_seconds=4.0, seed=3, speeds=dataset.speeds)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        dataset.epoch = epoch
        speeds = dataset.speeds(epoch)
        assert set(speeds.tolist()) == {0.9, 1.0, 1.1}
        loaded = {i: len(dataset[i]["wav"]) / 8000 for i in range(len(utts))}
        for i, seconds in loaded.items():  # what the sampler assumed is what was loaded
            assert seconds == pytest.approx(durs[i] / speeds[i], abs=1e-3)
        batches = sampler.batches()
        assert sorted(i for b in batches for i in b) == list(range(len(utts)))
        for batch in batches:
            assert len(batch) * max(loaded[i] for i in batch) <= 4.0 + 1e-3
        padded = sum(len(b) * max(loaded[i] for i in b) for b in batches)
        assert 1 - sum(loaded.values()) / padded < 0.1
    assert not np.array_equal(dataset.speeds(0), dataset.speeds(1))


def test_segments_round_trip_and_load_their_span(tmp_path):
    ramp = (np.arange(32000) / 32000).astype(np.float32)
    sf.write(tmp_path / "long.wav", ramp, 16000, subtype="FLOAT")
    utts = [
        Utterance(str(tmp_path / "long.wav"), 0.5, "a", offset=0.25),
        Utterance(str(tmp_path / "long.wav"), 2.0, "b"),
    ]
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, utts)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert rows[0] == {"audio_filepath": "long.wav", "duration": 0.5, "text": "a", "offset": 0.25}
    assert "offset" not in rows[1]  # a whole file has none (NeMo's convention)
    back = read_manifest(manifest)
    assert back == utts
    assert back[0].key == f"{tmp_path / 'long.wav'}@0.25-0.75"
    assert back[1].key == str(tmp_path / "long.wav")
    dataset = SpeechDataset(back, CharTokenizer(["a", "b"]), 16000)
    np.testing.assert_array_equal(dataset[0]["wav"].numpy(), ramp[4000:12000])
    assert len(dataset[1]["wav"]) == 32000
    assert [u.header_duration() for u in back] == [pytest.approx(0.5), pytest.approx(2.0)]
