"""The CUDA code paths: AMP training (bf16, fp16 with loss scaling), pinned host memory for
the loader's batches, transcription on the GPU. Skipped, with the reason, without CUDA."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from asr.config import load_config
from asr.data import BucketBatchSampler, SpeechDataset, collate, read_manifest
from asr.train import Trainer, train
from asr.transcribe import Transcriber
from tests.conftest import tiny_overrides

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="no CUDA device: AMP training, pinned memory and GPU transcription not run",
    ),
]


def cuda_overrides(manifest: Path, precision: str) -> list[str]:
    return [*tiny_overrides(manifest), "train.device=cuda", f"train.precision={precision}"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_amp_training_on_cuda(tone_manifest: Path, tmp_path: Path, precision: str):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    overrides = [*cuda_overrides(tone_manifest, precision), "train.epochs=6"]
    result = train(load_config(None, overrides), tmp_path / "exp")
    assert all(math.isfinite(x) for x in result.losses)
    assert sum(result.losses[-3:]) < sum(result.losses[:3])
    state = torch.load(tmp_path / "exp" / "last.pt", weights_only=True, map_location="cpu")
    # fp16 scales its loss (the scaler's state is saved for resume); bf16 needs no scaling.
    assert bool(state["scaler"]) == (precision == "fp16")


def test_trainer_uses_the_gpu_and_pinned_batches(tone_manifest: Path, tmp_path: Path):
    cfg = load_config(None, cuda_overrides(tone_manifest, "bf16"))
    trainer = Trainer(cfg, tmp_path / "exp")
    assert trainer.device.type == "cuda"
    assert all(p.is_cuda for p in trainer.model.parameters())
    batch = next(iter(trainer.loader(trainer.dataset, trainer.sampler)))
    assert batch["wavs"].is_pinned() and batch["tokens"].is_pinned()
    trainer.fit_cmvn()
    assert trainer.model.features.cmvn_mean.is_cuda


def test_transcription_on_cuda_matches_the_cpu(tone_manifest: Path, tmp_path: Path):
    overrides = [*cuda_overrides(tone_manifest, "bf16"), "train.epochs=4"]
    train(load_config(None, overrides), tmp_path / "exp")
    checkpoint = tmp_path / "exp" / "best.pt"
    on_gpu = Transcriber.from_checkpoint(checkpoint, device="cuda", precision="fp32")
    on_cpu = Transcriber.from_checkpoint(checkpoint, device="cpu")
    assert next(on_gpu.model.parameters()).is_cuda
    utts = read_manifest(tone_manifest)
    dataset = SpeechDataset(utts, None, on_cpu.model.features.cfg.sample_rate)
    (indices,) = BucketBatchSampler([u.duration for u in utts], 1e9, shuffle=False).batches()
    batch = collate([dataset[i] for i in indices])
    with torch.no_grad():
        cpu_lp, cpu_lens = on_cpu.model(batch["wavs"], batch["wav_lens"])
        gpu_lp, gpu_lens = on_gpu.model(batch["wavs"].cuda(), batch["wav_lens"].cuda())
    assert torch.equal(cpu_lens, gpu_lens.cpu())
    # TF32 matmuls on the GPU: close, not equal.
    assert torch.allclose(cpu_lp, gpu_lp.float().cpu(), atol=5e-2), (cpu_lp - gpu_lp.cpu()).abs()
    texts = [on_gpu.transcribe(u.audio_filepath) for u in utts]
    assert all(isinstance(t, str) for t in texts)
