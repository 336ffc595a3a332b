"""lhotse recordings + supervisions -> Utterances (offsets for segments; other sources refused)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from asr.datasets import DatasetError
from data_prep.lhotse_manifests import recording_file, require_lhotse, utterances_from_lhotse

lhotse = pytest.importorskip("lhotse", reason="lhotse (the optional extra) is not installed")


def make_recording(path, seconds: float, rate: int = 16000):
    sf.write(path, np.zeros(round(seconds * rate), dtype=np.float32), rate)
    return lhotse.Recording.from_file(path)


def test_whole_files_and_segments(tmp_path):
    short = make_recording(tmp_path / "short.wav", 1.5)
    long = make_recording(tmp_path / "long.wav", 10.0)
    recordings = lhotse.RecordingSet.from_recordings([short, long])
    sup = lhotse.SupervisionSegment
    supervisions = lhotse.SupervisionSet.from_segments(
        [
            sup("s0", short.id, start=0.0, duration=1.5, text="WHOLE FILE"),
            sup("s1", long.id, start=2.25, duration=3.0, text="first part"),
            sup("s2", long.id, start=0.0, duration=2.0, text="starts at zero"),
        ]
    )
    utts = utterances_from_lhotse(recordings, supervisions)
    assert [(u.audio_filepath, u.duration, u.text, u.offset) for u in utts] == [
        (str(tmp_path / "short.wav"), 1.5, "WHOLE FILE", None),
        (str(tmp_path / "long.wav"), 3.0, "first part", 2.25),
        # from 0 but shorter than the file: still a segment
        (str(tmp_path / "long.wav"), 2.0, "starts at zero", 0.0),
    ]


def test_missing_text_and_recording_are_named(tmp_path):
    rec = make_recording(tmp_path / "a.wav", 1.0)
    recordings = lhotse.RecordingSet.from_recordings([rec])
    no_text = lhotse.SupervisionSegment("s0", rec.id, start=0, duration=1.0, text=" ")
    with pytest.raises(DatasetError, match=rf"supervision s0 \({rec.id}\): no text"):
        utterances_from_lhotse(recordings, [no_text])
    orphan = lhotse.SupervisionSegment("s1", "nowhere", start=0, duration=1.0, text="x")
    with pytest.raises(DatasetError, match="supervision s1: no recording 'nowhere'"):
        utterances_from_lhotse(recordings, [orphan])


def test_command_sources_are_refused(tmp_path):
    rec = make_recording(tmp_path / "a.wav", 1.0)
    piped = rec.__class__(
        id="piped",
        sources=[
            lhotse.audio.AudioSource(type="command", channels=[0], source="sox a.wav -t wav -")
        ],
        sampling_rate=rec.sampling_rate,
        num_samples=rec.num_samples,
        duration=rec.duration,
    )
    with pytest.raises(DatasetError, match="recording piped: its audio comes from a 'command'"):
        recording_file(piped)


def test_require_lhotse_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_lhotse(name, *args, **kwargs):
        if name == "lhotse":
            raise ImportError("No module named 'lhotse'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_lhotse)
    with pytest.raises(DatasetError, match=r"pip install 'rnn-asr\[lhotse\]'"):
        require_lhotse("librispeech")
