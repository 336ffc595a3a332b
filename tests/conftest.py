"""Shared fixtures: a tiny tone 'language' made on the spot, the local corpora (ASR_DATA) and
an HTTP server on 127.0.0.1 that answers Range requests (for resumable downloads)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.data import Utterance, write_manifest

# Local copies of corpora: $ASR_DATA as the recipes read it (recipes/common.sh), by default
# ../shared/data beside the repository.
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ASR_DATA") or ROOT.parent / "shared" / "data")
FSDD = SHARED / "free-spoken-digit-dataset-1.0.10"

# Each letter is a tone; letters are 80 ms long with 40 ms of silence between them.
TONES = {"a": 440.0, "b": 880.0, "c": 1320.0, " ": None}
TEXTS = ["abc", "cab", "ba", "ca", "bc", "a b", "cc", "aab", "acb", "b", "bca", "c a"]


def tone_utterance(text: str, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A (S,) float32 waveform: one tone burst per character (a space is a longer pause)."""
    pieces = [np.zeros(int(0.05 * sample_rate))]
    for ch in text:
        n = int(0.08 * sample_rate)
        t = np.arange(n) / sample_rate
        if TONES[ch] is None:
            pieces.append(np.zeros(n))
        else:
            pieces.append(0.3 * np.sin(2 * np.pi * TONES[ch] * t) * np.hanning(n))
        pieces.append(np.zeros(int(0.04 * sample_rate)))
    pieces.append(np.zeros(int(0.05 * sample_rate)))
    wav = np.concatenate(pieces)
    return (wav + 0.003 * rng.standard_normal(len(wav))).astype(np.float32)


def make_tone_corpus(folder: Path, sample_rate: int = 8000, repeats: int = 1) -> Path:
    """Write wavs and a manifest of TEXTS (each `repeats` times) under folder; returns it."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    utts = []
    for r in range(repeats):
        for i, text in enumerate(TEXTS):
            wav = tone_utterance(text, sample_rate, rng)
            path = folder / f"utt{r}_{i}.wav"
            sf.write(path, wav, sample_rate)
            utts.append(Utterance(str(path), len(wav) / sample_rate, text))
    manifest = folder / "manifest.jsonl"
    write_manifest(manifest, utts)
    return manifest


@pytest.fixture
def tone_manifest(tmp_path: Path) -> Path:
    return make_tone_corpus(tmp_path / "tones")


def tiny_overrides(manifest: Path) -> list[str]:
    """Config overrides for a model that trains on the tone corpus in seconds."""
    return [
        f"data.train_manifest={manifest}",
        f"data.dev_manifest={manifest}",
        "data.batch_seconds=1.5",
        "data.num_workers=0",
        "features.sample_rate=8000",
        "features.n_mels=24",
        "model.subsample=1",
        "model.conv_channels=0",
        "model.hidden_size=48",
        "model.num_layers=2",
        "model.dropout=0.1",
        "train.lr=0.01",
        "train.warmup_steps=5",
        "train.progress=false",
    ]


def tiny_recipe_model(epochs: int) -> list[str]:
    """Overrides that make a recipe train a 33 k-parameter model on a tone corpus (8 kHz) in
    seconds of one core, validating once at the end."""
    return [
        "data.batch_seconds=2",
        "data.num_workers=0",
        "features.sample_rate=8000",
        "features.n_mels=24",
        "model.subsample=2",
        "model.conv_channels=8",
        "model.hidden_size=48",
        "model.num_layers=1",
        "train.lr=0.02",
        "train.warmup_steps=10",
        f"train.epochs={epochs}",
        "train.spec_augment=false",
        "train.wave_augment=false",
        "train.average_last=0",
        "train.validate_every_epochs=100",
        "train.progress=false",
    ]


@pytest.fixture
def cxx_without_boost(tmp_path: Path) -> Path:
    """A C++ compiler for $CXX that fails, as one without Boost does, on any source or flag
    naming Boost, and hands everything else to the real c++."""
    path = tmp_path / "bin" / "cxx-without-boost"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        "source=$(cat)\n"
        'case "$source $*" in\n'
        '  *boost*) echo "fatal error: boost/thread.hpp: No such file" >&2; exit 1 ;;\n'
        "esac\n"
        'printf "%s\\n" "$source" | exec c++ "$@"\n'
    )
    path.chmod(0o755)
    return path


@dataclass
class ServedFiles:
    files: dict[str, bytes]  # URL path -> body
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)


class _RangeHandler(BaseHTTPRequestHandler):
    """GET of ServedFiles.files; `Range: bytes=N-` is answered with 206 and the rest."""

    def do_GET(self) -> None:
        served: ServedFiles = self.server.served
        rng = self.headers.get("Range")
        served.requests.append((self.path, rng))
        body = served.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture
def range_server():
    """(ServedFiles, base URL) of a server on 127.0.0.1; put bodies in ServedFiles.files."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.served = ServedFiles(files={})
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd.served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()
