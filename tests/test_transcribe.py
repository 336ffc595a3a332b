"""Transcriber: the decoder's spaces are tidied, the ids are decoded exactly; word times come
from the path that produced the words; array layouts, sample rates and result order."""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import srt
import torch
import webvtt
from torch import nn

from asr.audio import AudioError
from asr.decoding.beam import BeamConfig, BeamSearchDecoder
from asr.subtitles import group_cues, to_json_record, to_srt, to_vtt
from asr.tokenizers import CharTokenizer
from asr.transcribe import SampleRateWarning, Transcriber


class FixedOutput(nn.Module):
    """Stands in for a recogniser: emits one-hot log-probs for a fixed id sequence per frame."""

    def __init__(self, ids: list[int], vocab: int):
        super().__init__()
        self.ids = ids
        self.vocab = vocab

    def forward(self, wavs, wav_lens):
        log_probs = torch.full((wavs.shape[0], len(self.ids), self.vocab), -30.0)
        for t, i in enumerate(self.ids):
            log_probs[:, t, i] = 0.0
        return log_probs, torch.full((wavs.shape[0],), len(self.ids))


def test_leading_trailing_and_doubled_spaces_are_dropped():
    tok = CharTokenizer([" ", "a", "b"])  # ids: blank 0, space 1, a 2, b 3
    # Frames: " a", blank, " ", blank, " b ", i.e. decoded " a  b " before tidying.
    ids = [1, 2, 0, 1, 0, 1, 3, 1]
    transcriber = Transcriber(FixedOutput(ids, tok.vocab_size), tok, "cpu")
    wavs = torch.zeros(2, 100)
    assert transcriber.decode_batch(wavs, torch.tensor([100, 80])) == ["a b", "a b"]


def test_beam_search_decoder_replaces_greedy_and_gives_nbest():
    tok = CharTokenizer([" ", "a", "b"])  # ids: blank 0, space 1, a 2, b 3
    ids = [2, 3, 0, 3, 1, 2]  # frames "ab", blank, "b a": greedy "abb a"
    transcriber = Transcriber(FixedOutput(ids, tok.vocab_size), tok, "cpu")
    wavs = torch.zeros(1, 100)
    assert transcriber.decode_batch(wavs, torch.tensor([100])) == ["abb a"]
    # With "abb" the only word, the last frame can only be a blank: "abb".
    transcriber.decoder = BeamSearchDecoder(tok, BeamConfig(beam_size=8, nbest=3), words=["abb"])
    (rec,) = transcriber.recognise_batch(wavs, torch.tensor([100]))
    assert rec.text == "abb" and rec.nbest[0][0] == "abb"
    transcriber.decoder = BeamSearchDecoder(tok, BeamConfig(beam_size=8), words=["abb", "a"])
    assert transcriber.decode_batch(wavs, torch.tensor([100])) == ["abb a"]


def test_segments_of_one_file_match_the_same_audio_cut_into_files(tmp_path):
    """Manifest offsets: each segment gives the log-probs of its own audio cut out as a file,
    and evaluation scores every segment of a shared file under its own key."""
    import numpy as np
    import soundfile as sf

    from asr.data import Utterance
    from asr.evaluate import evaluate_utterances
    from asr.features import FeatureConfig
    from asr.model import ModelConfig, Recogniser

    rng = np.random.default_rng(0)
    long = (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32)
    sf.write(tmp_path / "long.wav", long, 16000, subtype="FLOAT")
    spans = [(0.0, 1.0), (1.25, 0.5), (2.0, 1.0)]
    for i, (start, length) in enumerate(spans):
        cut = long[round(start * 16000) : round((start + length) * 16000)]
        sf.write(tmp_path / f"cut{i}.wav", cut, 16000, subtype="FLOAT")
    segments = [
        Utterance(str(tmp_path / "long.wav"), length, "ab", offset=start) for start, length in spans
    ]
    tok = CharTokenizer([" ", "a", "b"])
    torch.manual_seed(0)
    model = Recogniser(FeatureConfig(n_mels=20), ModelConfig(n_mels=20, vocab_size=4))
    transcriber = Transcriber(model, tok, "cpu")

    def log_probs_by_name(sources):
        out = {}
        for batch in transcriber.log_prob_batches(sources):
            assert not batch.errors
            for name, lp, n in zip(batch.names, batch.log_probs, batch.lengths, strict=True):
                out[name] = lp[: int(n)]
        return out

    by_segment = log_probs_by_name(segments)
    by_file = log_probs_by_name([tmp_path / f"cut{i}.wav" for i in range(len(spans))])
    assert sorted(by_segment) == sorted(u.key for u in segments)
    for i, u in enumerate(segments):
        torch.testing.assert_close(by_segment[u.key], by_file[str(tmp_path / f"cut{i}.wav")])
    result = evaluate_utterances(transcriber, segments)
    assert [s.audio_filepath for s in result.utterances] == sorted(u.key for u in segments)
    assert result.score.words == 3 and not result.failures
    # A segment past the end of its file is reported by name, the others still scored.
    bad = Utterance(str(tmp_path / "long.wav"), 1.0, "ab", offset=2.5)
    result = evaluate_utterances(transcriber, [*segments, bad])
    assert len(result.utterances) == 3
    assert result.failures == [
        f"{tmp_path / 'long.wav'}: segment 2.5-3.5 s lies past the end of the audio (3.000 s)"
    ]


# --- word times from the path that produced the words ----------------------------------------

LETTERS = CharTokenizer(" abcdefghijklmnopqrstuvwxyz'")
SPACE = LETTERS.encode(" ")[0]
HOP_MS, SUBSAMPLE = 10, 4  # 40 ms per output frame
FRAME = HOP_MS / 1000 * SUBSAMPLE
# A weak model's greedy path "    ct     t  t h" (leading and doubled spaces), one character a
# frame ("_" = blank). Its space frames give the letters some probability and the blank almost
# none, so an alignment of the tidied text "ct t t h" puts letters on space frames.
WEAK = "    __ _ct__     _t_  t_ _h___"


def weak_log_probs(frames: str) -> torch.Tensor:
    """One frame per character ("_" = blank) -> (T, V) log-probs whose best unit is it."""
    rows = []
    for ch in frames:
        row = torch.full((LETTERS.vocab_size,), 1e-3)
        if ch == "_":
            row[0] = 0.6
        elif ch == " ":
            row[SPACE], row[0] = 0.6, 0.002
            row[LETTERS.encode("cth")] = 0.1
        else:
            row[LETTERS.encode(ch)[0]], row[0] = 0.5, 0.3
        rows.append(row / row.sum())
    return torch.stack(rows).log()


def emitted_words(frames: str) -> list[tuple[str, float, float]]:
    """(word, start, end) in seconds of each word of the frame string: from the first frame of
    its first character to the end of the last frame of its last one."""
    out, t = [], 0
    for piece in frames.split(" "):
        letters = [i for i, c in enumerate(piece) if c != "_"]
        if letters:
            word = "".join(c for i, c in enumerate(piece) if c != "_" and c != piece[i - 1 : i])
            out.append((word, (t + letters[0]) * FRAME, (t + letters[-1] + 1) * FRAME))
        t += len(piece) + 1
    return out


class FixedLogProbs(nn.Module):
    """Stands in for a recogniser: the same (T, V) log-probs for every input, 40 ms frames."""

    def __init__(self, log_probs: torch.Tensor, sample_rate: int = 16000):
        super().__init__()
        self.fixed = log_probs
        self.features = SimpleNamespace(cfg=SimpleNamespace(sample_rate=sample_rate, hop_ms=HOP_MS))
        self.acoustic = SimpleNamespace(cfg=SimpleNamespace(subsample=SUBSAMPLE))

    def forward(self, wavs, wav_lens):
        b, (t, _) = wavs.shape[0], self.fixed.shape
        return self.fixed.expand(b, -1, -1).clone(), torch.full((b,), t)


def timed_words(tmp_path, decoder: BeamSearchDecoder | None = None):
    """transcribe_files(timestamps=True) of one file over the WEAK log-probs, as the CLI runs it."""
    wav = tmp_path / "weak.wav"
    sf.write(wav, np.zeros(8000, np.float32), 16000)
    transcriber = Transcriber(FixedLogProbs(weak_log_probs(WEAK)), LETTERS, "cpu", decoder=decoder)
    (result,) = transcriber.transcribe_files([wav], timestamps=True)
    assert result.error is None
    return result


def uniform_char_lm(path) -> str:
    """An ARPA LM over flashlight's names of LETTERS' units ("|" for the space): uniform
    unigrams, and the one bigram KenLM needs to read it."""
    names = ["<s>", "</s>", "<unk>", *("|" if t == " " else t for t in LETTERS.tokens[1:])]
    lines = ["\\data\\", f"ngram 1={len(names)}", "ngram 2=1", "", "\\1-grams:"]
    lines += [f"{-99 if w == '<s>' else -1.0}\t{w}\t0" for w in names]
    lines += ["", "\\2-grams:", "-1.0\tc t", "", "\\end\\", ""]
    path.write_text("\n".join(lines))
    return str(path)


@pytest.mark.parametrize("decoding", ["greedy", "lexicon", "char-lm"])
def test_word_times_are_where_the_path_emitted_the_words(tmp_path, decoding):
    # Each beam search's best path is the greedy one here: the words as emitted.
    decoder = None
    if decoding == "lexicon":
        decoder = BeamSearchDecoder(LETTERS, BeamConfig(beam_size=8), words=["ct", "t", "h"])
    elif decoding == "char-lm":
        lm = uniform_char_lm(tmp_path / "chars.arpa")
        decoder = BeamSearchDecoder(LETTERS, BeamConfig(beam_size=8, lm_weight=0.0), lm=lm)
    result = timed_words(tmp_path, decoder)
    truth = emitted_words(WEAK)
    assert result.text == "ct t t h" == " ".join(w for w, _, _ in truth)
    lp = weak_log_probs(WEAK)
    for w, (word, start, end) in zip(result.words, truth, strict=True):
        assert (w.word, w.start, w.end) == (word, pytest.approx(start), pytest.approx(end))
        # each character's posterior at the frame that emitted it, geometric mean
        frames = [round(start / FRAME) + i for i in range(len(word))]
        chars = [lp[t, LETTERS.encode(c)[0]] for t, c in zip(frames, word, strict=True)]
        assert w.confidence == pytest.approx(torch.stack(chars).mean().exp().item())
    record = to_json_record(result.path, result.text, result.words)
    assert [(w["start"], w["end"]) for w in record["words"]] == [
        (round(start, 3), round(end, 3)) for _, start, end in truth
    ]


def test_subtitle_cues_follow_the_emitted_words(tmp_path):
    result = timed_words(tmp_path)
    ms = [
        (word, round(start * 1000), round(end * 1000)) for word, start, end in emitted_words(WEAK)
    ]
    for max_chars, groups in [(42, [[0, 1, 2, 3]]), (4, [[0, 1], [2, 3]])]:
        cues = group_cues(result.words, max_chars=max_chars)
        expected = [(ms[g[0]][1], ms[g[-1]][2], " ".join(ms[i][0] for i in g)) for g in groups]
        parsed = [
            (s.start // timedelta(milliseconds=1), s.end // timedelta(milliseconds=1), s.content)
            for s in srt.parse(to_srt(cues))
        ]
        assert parsed == expected
        captions = webvtt.from_string(to_vtt(cues), strict=True).captions
        assert [(vtt_ms(c.start), vtt_ms(c.end), c.text) for c in captions] == expected


def vtt_ms(timestamp: str) -> int:
    """HH:MM:SS.mmm -> milliseconds."""
    h, m, s = timestamp.split(":")
    return (int(h) * 3600 + int(m) * 60) * 1000 + round(float(s) * 1000)


def test_beam_search_words_are_timed_on_its_own_path():
    """A lexicon turns the greedy "onw" into "one": each word is timed where the beam's path
    reads it, and the confidence of "one" carries the doubtful "e"."""
    frames = " _ _on_w_ _ _t_wo_ _"
    lp = weak_log_probs(frames)
    lp[7, LETTERS.encode("e")[0]] = lp[7].max() - 0.5  # "e" a close second to "w"
    transcriber = Transcriber(FixedLogProbs(lp), LETTERS, "cpu")
    transcriber.decoder = BeamSearchDecoder(LETTERS, BeamConfig(beam_size=8), words=["one", "two"])
    (rec,) = transcriber.recognise_batch(torch.zeros(1, 800), torch.tensor([800]), timestamps=True)
    assert rec.text == "one two"
    one, two = rec.words
    assert (one.word, one.start, one.end) == (
        "one",
        pytest.approx(4 * FRAME),
        pytest.approx(8 * FRAME),
    )
    assert (two.word, two.start, two.end) == (
        "two",
        pytest.approx(13 * FRAME),
        pytest.approx(17 * FRAME),
    )
    assert one.confidence < two.confidence


# --- the Python API: array layouts, lower sample rates, result order -----------------------


class RecordingModel(FixedLogProbs):
    """FixedLogProbs that keeps the waveforms it was given."""

    def __init__(self, sample_rate: int = 16000):
        super().__init__(weak_log_probs(WEAK), sample_rate)
        self.seen: list[torch.Tensor] = []

    def forward(self, wavs, wav_lens):
        self.seen += [w[: int(n)].clone() for w, n in zip(wavs, wav_lens, strict=True)]
        return super().forward(wavs, wav_lens)


def test_channels_first_arrays_are_taken():
    rng = np.random.default_rng(0)
    stereo = (0.1 * rng.standard_normal((16000, 2))).astype(np.float32)  # (S, C)
    model = RecordingModel()
    transcriber = Transcriber(model, LETTERS, "cpu")
    for audio in (stereo, stereo.T, torch.from_numpy(stereo.T.copy()), stereo[:, :1].T):
        assert transcriber.transcribe(audio, sample_rate=16000) == "ct t t h"
    mono = torch.from_numpy(stereo.mean(axis=1))
    for seen in model.seen[:3]:
        torch.testing.assert_close(seen, mono)
    torch.testing.assert_close(model.seen[3], torch.from_numpy(stereo[:, 0]))


@pytest.mark.parametrize("shape", [(40, 16000), (16000, 40), (8, 8), (2, 3, 16000)])
def test_array_of_another_shape_is_refused(shape):
    transcriber = Transcriber(RecordingModel(), LETTERS, "cpu")
    with pytest.raises(AudioError) as err:
        transcriber.transcribe(np.zeros(shape, np.float32), sample_rate=16000)
    assert str(err.value) == (
        "audio array: expected (S,) or (S, C) samples (or channels-first (C, S)) with at most "
        f"32 channels, got shape {shape}"
    )


def test_lower_sample_rate_is_upsampled_with_one_warning(tmp_path):
    low, high = tmp_path / "phone.wav", tmp_path / "studio.wav"
    sf.write(low, np.zeros(4000, np.float32), 8000)
    sf.write(high, np.zeros(22050, np.float32), 22050)
    expected = (
        f"{low}: 8000 Hz audio upsampled to the model's 16000 Hz (it has nothing above 4000 Hz, "
        "unlike the audio the model was trained on: expect more errors); further audio at a "
        "lower rate is upsampled without this warning"
    )
    transcriber = Transcriber(RecordingModel(), LETTERS, "cpu")
    with pytest.warns(SampleRateWarning) as caught:
        results = list(transcriber.transcribe_files([high, low, low]))
        transcriber.transcribe(low)
        transcriber.transcribe(np.zeros(4000, np.float32), sample_rate=8000)
    assert [str(w.message) for w in caught] == [expected]
    assert [r.text for r in results] == ["ct t t h"] * 3
    assert sorted(len(seen) for seen in transcriber.model.seen) == [8000] * 4 + [16000]
    # a higher rate is no cause for a warning; each Transcriber warns once
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Transcriber(RecordingModel(), LETTERS, "cpu").transcribe(high)
    with pytest.warns(SampleRateWarning, match="audio array: 8000 Hz audio upsampled"):
        Transcriber(RecordingModel(), LETTERS, "cpu").transcribe(np.zeros(800), sample_rate=8000)


def test_a_folder_yields_the_formats_ffmpeg_reads_too(tmp_path):
    from asr.transcribe import find_audio_files

    for name in ("a.wav", "memo.m4a", "talk.mp4", "call.webm", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    files, problems = find_audio_files([tmp_path])
    assert [Path(f).name for f in files] == ["a.wav", "call.webm", "memo.m4a", "talk.mp4"]
    assert problems == []


def test_a_low_rate_m4a_is_upsampled_with_the_warning(tmp_path):
    """The rate comes from what FFmpeg decodes for formats libsndfile cannot open."""
    av = pytest.importorskip("av", reason="PyAV (the formats extra) is not installed")
    path = tmp_path / "memo.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000, layout="mono")
        for i in range(0, 8000, 1024):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 8000, i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    transcriber = Transcriber(RecordingModel(), LETTERS, "cpu")
    with pytest.warns(SampleRateWarning, match=f"{path}: 8000 Hz audio upsampled"):
        (result,) = transcriber.transcribe_files([path])
    assert result.error is None


def test_transcribe_files_returns_results_in_input_order(tmp_path):
    """Batches run shortest first and long files are cut at pauses: results still come back in
    the order of the sources given, unreadable and long ones in their place."""
    sources = []
    for name, seconds in [("c", 1.0), ("missing", None), ("long", 3.0), ("a", 0.2), ("b", 0.5)]:
        path = tmp_path / f"{name}.wav"
        if seconds is not None:
            sf.write(path, np.zeros(round(16000 * seconds), np.float32), 16000)
        sources.append(path)
    transcriber = Transcriber(RecordingModel(), LETTERS, "cpu", batch_seconds=1.0, long_seconds=2.0)
    results = list(transcriber.transcribe_files(sources))
    assert [r.path for r in results] == [str(p) for p in sources]
    assert [r.error is None for r in results] == [True, False, True, True, True]
    assert [len(seen) for seen in transcriber.model.seen] == [3200, 8000, 16000]  # batch order


def test_a_path_that_does_not_spell_the_text_is_not_timed():
    """Words are timed only on a path that spells the decoder's text; otherwise the error says
    what the path spells."""
    from asr.decoding import Hypothesis

    class Mismatched:
        def decode(self, log_probs, lengths):
            path = [0] * log_probs.shape[1]
            path[1], path[3] = LETTERS.encode("ba")
            return [[Hypothesis("ab", LETTERS.encode("ab"), -1.0, path)]]

    transcriber = Transcriber(FixedLogProbs(weak_log_probs("______")), LETTERS, "cpu")
    transcriber.decoder = Mismatched()
    (rec,) = transcriber.recognise_batch(torch.zeros(1, 800), torch.tensor([800]), timestamps=True)
    assert rec.words is None
    assert rec.error == "cannot time the words of 'ab': the decoder's path spells 'ba'"
