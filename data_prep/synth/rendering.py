"""Rendering: one utterance plan to one wav, and many plans in worker processes.

The engine's waveform is resampled to the working rate (8 kHz when band-limited: telephone /
FSDD-like bandwidth, else the output rate), white or pink noise is added at the plan's SNR,
the result is resampled to the output rate, scaled to the plan's peak level and written as
16-bit PCM wav. A wav is written whole or not at all.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from asr.progress import progress_bar
from data_prep.synth.config import SynthError
from data_prep.synth.engines import Engine
from data_prep.synth.plan import UtterancePlan


def add_noise(x: np.ndarray, snr_db: float, color: str, rng: np.random.Generator) -> np.ndarray:
    """x + noise whose power is exactly x's mean power / 10^(snr_db/10)."""
    noise = rng.standard_normal(len(x))
    if color == "pink":  # 1/f power: scale the spectrum's amplitude by 1/sqrt(f), drop DC
        spectrum = np.fft.rfft(noise)
        freqs = np.fft.rfftfreq(len(x))
        spectrum[1:] /= np.sqrt(freqs[1:])
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, len(x))
    elif color != "white":
        raise SynthError(f"unknown noise colour {color!r}; choose white or pink")
    signal_power = float(np.mean(np.square(x, dtype=np.float64)))
    noise_power = float(np.mean(np.square(noise))) + 1e-30
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (x + scale * noise).astype(np.float32)


def render(
    plan: UtterancePlan, engine: Engine, out_rate: int, band_limit: bool
) -> tuple[str, float | None, str | None]:
    """Synthesise, resample, add noise, scale and write one wav -> (id, duration, error)."""
    try:
        x, rate = engine.synthesize(plan.voice, plan.text, plan.rate, plan.semitones, plan.seed)
        x = np.asarray(x, dtype=np.float32)
        if x.size == 0 or not np.isfinite(x).all() or np.abs(x).max() < 1e-6:
            raise RuntimeError("empty, silent or non-finite audio")
        # Noise goes in at the working rate, so band-limiting (8 kHz) limits it too.
        work_rate = min(8000, out_rate) if band_limit else out_rate
        if rate != work_rate:
            x = soxr.resample(x, rate, work_rate, quality="HQ")
        if plan.noise is not None:
            x = add_noise(x, plan.snr_db, plan.noise, np.random.default_rng(plan.seed))
        if work_rate != out_rate:
            x = soxr.resample(x, work_rate, out_rate, quality="HQ")
        x = x * (10 ** (plan.peak_db / 20) / np.abs(x).max())
        path = Path(plan.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        sf.write(str(tmp), x, out_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)  # a wav on disk is always whole: resuming keeps it
        return plan.utt_id, len(x) / out_rate, None
    except Exception as err:  # any failure is reported for this utterance, the others go on
        cause = str(err) if isinstance(err, RuntimeError) else f"{type(err).__name__}: {err}"
        return plan.utt_id, None, cause


def render_all(
    plans: list[UtterancePlan],
    engines: Mapping[str, Engine],
    out_rate: int,
    band_limit: bool,
    jobs: int | None = None,
    progress: bool | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Render every plan -> ({id: duration in seconds}, {id: cause of failure}).

    Args:
        engines: engine name -> engine; each plan uses the one of its voice.
        jobs: worker processes (default os.cpu_count(); 1 renders in this process).
        progress: show a progress bar (default: when stderr is a terminal).
    """
    durations: dict[str, float] = {}
    failures: dict[str, str] = {}
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(plans)))
    show = sys.stderr.isatty() if progress is None else progress
    bar = progress_bar(total=len(plans), desc="synth", unit="utt", disable=not show)

    def collect(result: tuple[str, float | None, str | None]) -> None:
        utt_id, duration, error = result
        if error is None:
            durations[utt_id] = duration
        else:
            failures[utt_id] = error
        bar.update()

    with bar:
        if jobs == 1:
            for p in plans:
                collect(render(p, engines[p.voice.engine], out_rate, band_limit))
        else:
            with ProcessPoolExecutor(jobs) as pool:
                futures = [
                    pool.submit(render, p, engines[p.voice.engine], out_rate, band_limit)
                    for p in plans
                ]
                for future in as_completed(futures):
                    collect(future.result())
    return durations, failures
