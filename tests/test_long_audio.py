"""Long files: read in blocks, cut at pauses (asr.segmenter), transcribed segment by segment
with words in order and times from the start of the file."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from asr.audio import AudioError, load_audio, read_blocks
from asr.features import FeatureConfig
from asr.segmenter import SegmenterConfig, find_segments
from asr.subtitles import group_cues, to_json_record, to_srt
from asr.text import CharTokenizer
from asr.transcribe import Transcriber
from tests.conftest import SHARED, TEXTS, TONES, tone_utterance

RATE = 8000
HOP = 80  # samples per 10 ms frame at RATE
AN4_MODEL = Path(__file__).resolve().parents[1] / "exp" / "an4-idle-s0" / "best.pt"


class ToneReader(nn.Module):
    """Stands in for a recogniser of the tone corpus (tests/conftest.py), exactly: each 10 ms
    frame is the letter whose tone is loudest in it, or blank when all are quiet; a quiet
    stretch of at least 120 ms between two tones is a space (a letter gap is 40 ms)."""

    def __init__(self, tokenizer: CharTokenizer):
        super().__init__()
        self.features = SimpleNamespace(cfg=FeatureConfig(sample_rate=RATE))
        self.acoustic = SimpleNamespace(cfg=SimpleNamespace(subsample=1))
        letters = [ch for ch, hz in TONES.items() if hz is not None]
        self.ids = torch.tensor([tokenizer.tokens.index(ch) for ch in letters])
        self.space = tokenizer.tokens.index(" ")
        self.vocab = tokenizer.vocab_size
        t = torch.arange(HOP) / RATE
        hz = torch.tensor([TONES[ch] for ch in letters])
        self.cos = torch.cos(2 * torch.pi * hz[None] * t[:, None])  # (HOP, letters)
        self.sin = torch.sin(2 * torch.pi * hz[None] * t[:, None])

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor):
        """(B, S), (B,) -> one-hot log-probs (B, T, V), lengths (B,), T = S // 80."""
        num_frames = wavs.shape[1] // HOP
        frames = wavs[:, : num_frames * HOP].reshape(len(wavs), num_frames, HOP)  # (B, T, HOP)
        magnitude = (frames @ self.cos) ** 2 + (frames @ self.sin) ** 2  # (B, T, L)
        loud = magnitude.max(dim=2).values > 0.25
        ids = torch.where(loud, self.ids[magnitude.argmax(dim=2)], 0)  # (B, T), 0 = blank
        for b in range(len(wavs)):
            quiet_run = 0
            for t in range(num_frames):
                if loud[b, t]:
                    if quiet_run >= 12 and t - quiet_run > 0:  # a long gap after a tone
                        ids[b, t - quiet_run // 2 - 1] = self.space
                    quiet_run = 0
                else:
                    quiet_run += 1
        log_probs = torch.full((len(wavs), num_frames, self.vocab), -30.0)
        log_probs.scatter_(2, ids[..., None], 0.0)
        return log_probs, wav_lens // HOP


def tone_transcriber(**kwargs) -> Transcriber:
    tok = CharTokenizer(["a", "b", "c", " "])
    return Transcriber(ToneReader(tok), tok, "cpu", **kwargs)


def join_with_pauses(
    wavs: list[np.ndarray], path: Path, rate: int, pauses: tuple[float, float], seed: int = 0
) -> list[tuple[float, float]]:
    """Write the utterances one after another with quiet noise between them, a pause drawn
    from `pauses` (seconds) before each; returns each utterance's (start, end) in seconds."""
    rng = np.random.default_rng(seed)
    spans, at = [], 0
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
        for wav in wavs:
            gap = 0.001 * rng.standard_normal(round(rng.uniform(*pauses) * rate))
            f.write(gap.astype(np.float32))
            at += len(gap)
            f.write(wav)
            spans.append((at / rate, (at + len(wav)) / rate))
            at += len(wav)
        f.write((0.001 * rng.standard_normal(rate)).astype(np.float32))
    return spans


def tone_corpus(folder: Path, repeats: int) -> tuple[list[str], list[np.ndarray]]:
    """Each text of TEXTS `repeats` times, as files; returns their paths and waveforms."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    paths, wavs = [], []
    for r in range(repeats):
        for i, text in enumerate(TEXTS):
            wav = tone_utterance(text, RATE, rng)
            paths.append(str(folder / f"u{r}_{i}.wav"))
            sf.write(paths[-1], wav, RATE)
            wavs.append(wav)
    return paths, wavs


def check_words_in_spans(words, own_texts: list[str], spans, slack: float = 0.03) -> None:
    """The long file's words are, in order, the utterances' own words, each timed inside its
    utterance's span."""
    expected = [(w, i) for i, text in enumerate(own_texts) for w in text.split()]
    assert [w.word for w in words] == [w for w, _ in expected]
    for w, (_, i) in zip(words, expected, strict=True):
        start, end = spans[i]
        assert start - slack <= w.start < w.end <= end + slack, (w, spans[i])


@pytest.mark.parametrize(
    ("pauses", "max_seconds"),
    [((0.6, 1.5), 20.0), ((0.15, 0.3), 4.0)],
    ids=["cut-at-pauses", "long-runs-cut-at-quietest-point"],
)
def test_long_tone_file_equals_its_utterances_one_by_one(tmp_path, pauses, max_seconds):
    """No word lost or doubled at segment borders; every word timed within its utterance.
    With short pauses the runs merge and are cut at their quietest points instead."""
    paths, wavs = tone_corpus(tmp_path / "utts", repeats=4)
    long = tmp_path / "long.wav"
    spans = join_with_pauses(wavs, long, RATE, pauses)
    segmenter = SegmenterConfig(max_seconds=max_seconds, min_seconds=min(2.0, max_seconds / 4))
    transcriber = tone_transcriber(long_seconds=10.0, segmenter=segmenter)
    own = {r.path: r.text for r in transcriber.transcribe_files(paths)}
    own_texts = [own[p] for p in paths]
    assert own_texts == TEXTS * 4  # the stand-in reads the tones exactly

    (result,) = transcriber.transcribe_files([str(long)], timestamps=True)
    assert result.error is None
    assert result.text == " ".join(own_texts)
    check_words_in_spans(result.words, own_texts, spans)
    segments = result.segments
    assert all(s.end - s.start <= max_seconds + 1e-6 for s in segments)
    assert all(a.end <= b.start for a, b in itertools.pairwise(segments))
    assert " ".join(s.text for s in segments if s.text) == result.text
    if max_seconds < 10:  # the speech ran on: cut at the quietest points, not at VAD pauses
        assert any(a.end == b.start for a, b in itertools.pairwise(segments))


def test_file_over_the_600_s_limit_keeps_absolute_times_in_json_and_srt(tmp_path):
    """A 11-minute file (refused by load_audio, as training utterances are) is transcribed,
    and its subtitles say when the words were spoken: past ten minutes."""
    rng = np.random.default_rng(2)
    words = [tone_utterance(t, RATE, rng) for t in ("ab", "c a")]
    long = tmp_path / "meeting.wav"
    with sf.SoundFile(long, "w", RATE, 1, subtype="PCM_16") as f:
        f.write(np.zeros(RATE * 650, np.float32))  # written in one go: 10 MB of int16
        f.write(words[0])
        f.write(np.zeros(RATE, np.float32))
        f.write(words[1])
        f.write(np.zeros(RATE * 10, np.float32))
    with pytest.raises(AudioError, match="over the 600 s limit"):
        load_audio(long, RATE)
    transcriber = tone_transcriber()
    assert transcriber.transcribe(long) == "ab c a"
    (result,) = transcriber.transcribe_files([long], timestamps=True)
    assert [w.word for w in result.words] == ["ab", "c", "a"]
    assert 650 < result.words[0].start < 650.3 and 651 < result.words[1].start < 652.5
    record = json.loads(
        json.dumps(to_json_record(result.path, result.text, result.words, None, result.segments))
    )
    first, second = record["segments"]  # a 1 s pause between them
    assert (first["text"], second["text"]) == ("ab", "c a")
    assert 649.4 < first["start"] < 650 < first["end"] <= second["start"] < 651.5
    assert 652 < second["end"] < 653
    assert record["words"][0]["start"] == pytest.approx(result.words[0].start, abs=1e-3)
    srt = to_srt(group_cues(result.words))
    assert srt.startswith("1\n00:10:50,")


def test_bad_long_file_is_reported_and_the_batch_goes_on(tmp_path):
    """Non-finite samples 40 s in: one line naming the file and the time; the next file is
    still transcribed."""
    _, wavs = tone_corpus(tmp_path / "utts", repeats=1)
    good = tmp_path / "good.wav"
    join_with_pauses(wavs * 4, good, RATE, (0.6, 1.0))
    bad = tmp_path / "bad.wav"
    noisy = np.zeros(RATE * 45, np.float32)
    noisy[RATE * 40] = np.nan
    sf.write(bad, noisy, RATE, subtype="FLOAT")
    results = {r.path: r for r in tone_transcriber().transcribe_files([str(bad), str(good)])}
    assert results[str(bad)].text is None
    assert results[str(bad)].error == f"{bad}: audio contains NaN or infinite samples at 40.00 s"
    assert results[str(good)].text == " ".join(TEXTS * 4)


def test_blocks_join_into_the_whole_file_resampled(tmp_path):
    """read_blocks: any block size, stereo 44.1 kHz -> the same samples as load_audio."""
    rng = np.random.default_rng(3)
    stereo = (0.1 * rng.standard_normal((44100 * 3 + 17, 2))).astype(np.float32)
    sf.write(tmp_path / "s.wav", stereo, 44100, subtype="FLOAT")
    whole = load_audio(tmp_path / "s.wav", 16000).numpy()
    for block_seconds in (0.05, 1.0, 10.0):
        blocks = list(read_blocks(tmp_path / "s.wav", 16000, block_seconds))
        assert np.array_equal(np.concatenate(blocks), whole)
    same_rate = np.concatenate(list(read_blocks(tmp_path / "s.wav", 44100, 0.5)))
    assert np.allclose(same_rate, stereo.mean(axis=1))
    with pytest.raises(AudioError, match="no such file"):
        next(read_blocks(tmp_path / "missing.wav", 16000))


def test_silence_has_no_segments(tmp_path):
    sf.write(tmp_path / "quiet.wav", np.zeros(RATE * 40, np.float32), RATE)
    assert find_segments(tmp_path / "quiet.wav") == []
    (result,) = tone_transcriber().transcribe_files([str(tmp_path / "quiet.wav")])
    assert result.text == "" and result.segments == []


@pytest.mark.slow
def test_an4_utterances_joined_are_cut_between_them_and_lose_no_word(tmp_path):
    """Real speech: AN4 test utterances joined with pauses, through the AN4 model. One segment
    per utterance, cut in the pauses; the long file's words are exactly those of its segments
    cut out as files, each timed inside its utterance; and they stay close to the utterances'
    own transcripts (the model hears up to 0.5 s of the pause around each, so a few letters
    differ: exact equality is checked on the tone files above)."""
    import jiwer

    wav_dir = SHARED / "an4" / "wav" / "an4test_clstk"
    if not wav_dir.is_dir():
        pytest.skip(f"AN4 test audio not found under {wav_dir}")
    if not AN4_MODEL.is_file():
        pytest.skip(f"no AN4 model at {AN4_MODEL} (recipes/an4 trains one)")
    paths = sorted(str(p) for p in wav_dir.glob("*/*.wav"))[::6][:20]
    wavs = [sf.read(p, dtype="float32")[0] for p in paths]
    long = tmp_path / "an4-long.wav"
    spans = join_with_pauses(wavs, long, 16000, (1.0, 1.5))
    transcriber = Transcriber.from_checkpoint(AN4_MODEL, device="cpu")
    (result,) = transcriber.transcribe_files([str(long)], timestamps=True)
    assert result.error is None
    segments = result.segments
    assert len(segments) == len(paths)
    for segment, (start, end) in zip(segments, spans, strict=True):
        assert segment.start <= start + 0.3 and end - 0.3 <= segment.end  # AN4's own silence
    for a, (_, end), (start, _) in zip(segments, spans, spans[1:], strict=False):
        assert end < a.end < start  # cut in the pause

    cuts = []
    for i, segment in enumerate(segments):
        cuts.append(str(tmp_path / f"segment{i}.wav"))
        audio = sf.read(long, start=round(segment.start * 16000), stop=round(segment.end * 16000))
        sf.write(cuts[-1], audio[0], 16000)
    alone = {r.path: r.text for r in transcriber.transcribe_files(cuts)}
    assert [s.text for s in segments] == [alone[c] for c in cuts]
    check_words_in_spans(result.words, [s.text for s in segments], spans, slack=0.3)

    own = {r.path: r.text for r in transcriber.transcribe_files(paths)}
    assert jiwer.wer(" ".join(own[p] for p in paths), result.text) < 0.15
