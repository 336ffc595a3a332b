"""The peer of bench/inference.py: transcribe files with pocketsphinx 5 and its own model.

    bench/.venv-pocketsphinx/bin/python bench/pocketsphinx_peer.py FILE [FILE ...]

Runs in the venv of bench/setup_pocketsphinx.sh (it imports nothing from `asr`). The decoder
is pocketsphinx's default: the US English acoustic model, dictionary and trigram LM shipped
in its wheel, 16 kHz input. Each file is read whole (soundfile), mixed to mono, resampled to
16 kHz if needed (soxr) and decoded as one utterance. Prints FILE<TAB>TEXT per file, the
format of `asr transcribe --format text`.
"""

from __future__ import annotations

import sys

import numpy as np
import soundfile as sf
import soxr
from pocketsphinx import Decoder

RATE = 16000  # the rate of pocketsphinx's en-us model


def pcm16(path: str) -> bytes:
    """The file as 16 kHz mono little-endian 16-bit samples."""
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if rate != RATE:
        mono = soxr.resample(mono, rate, RATE)
    return (np.clip(mono, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def transcribe(decoder: Decoder, path: str) -> str:
    decoder.start_utt()
    decoder.process_raw(pcm16(path), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp is not None else ""


def main() -> None:
    decoder = Decoder(samprate=RATE, loglevel="FATAL")
    for path in sys.argv[1:]:
        print(f"{path}\t{transcribe(decoder, path)}", flush=True)


if __name__ == "__main__":
    main()
