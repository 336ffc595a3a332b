"""Inference: batched transcription of files, arrays and manifests with a trained checkpoint.

The model runs behind an `asr.inference.ModelRunner` (a PyTorch checkpoint's recogniser, or an
exported ONNX graph), which gives typed batches of log-probs; decoding them is greedy CTC by
default, beam search (lexicon and/or n-gram LM) with a `BeamSearchDecoder`. Optionally word
timestamps and confidences, read off the frame path that produced the words.

A file longer than `long_seconds` is never loaded whole: a voice-activity pass reads it in
blocks and cuts it at pauses into segments of at most `segmenter.max_seconds`
(asr.segmenter), the segments are read one by one (each a manifest-style offset + duration)
and batched through the model like short files, and their words are put back in order with
times from the start of the file. Such a file has no length limit.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asr.align import WordTiming, path_word_timings
from asr.audio import (
    AUDIO_SUFFIXES,
    AudioError,
    audio_duration,
    audio_sample_rate,
    load_audio,
    to_mono_resampled,
)
from asr.checkpoint import load_checkpoint, recogniser_from_state
from asr.data import Utterance
from asr.decoding import Hypothesis
from asr.decoding.beam import BeamSearchDecoder
from asr.decoding.choose import make_decoder, resolve_lm, tuned_settings
from asr.decoding.greedy import GreedyDecoder
from asr.device import pick_device
from asr.inference import (
    AudioSource,
    LogProbBatch,
    ModelRunner,
    TorchRunner,
    log_prob_batches,
    source_name,
)
from asr.model import Recogniser
from asr.segmenter import Segment, SegmenterConfig, find_segments
from asr.tokenizers import CharTokenizer, Tokenizer

__all__ = [
    "AUDIO_SUFFIXES",
    "AudioSource",
    "FileResult",
    "Recognition",
    "SampleRateWarning",
    "Transcriber",
    "find_audio_files",
    "samples_first",
    "source_name",
]

# A 2-D array's axis this short, beside a longer one, is its channels axis.
MAX_CHANNELS = 32


class SampleRateWarning(UserWarning):
    """Audio below the model's sample rate, upsampled: it lacks the upper frequencies the model
    was trained on."""


def samples_first(audio: np.ndarray) -> np.ndarray:
    """(S,), (S, C) or channels-first (C, S) audio -> (S,) or (S, C).

    A 2-D array is (S, C) when its second axis has at most MAX_CHANNELS entries and its first
    more, (C, S) the other way round; AudioError for any other shape.

    >>> samples_first(np.zeros((2, 16000))).shape
    (16000, 2)
    """
    if audio.ndim == 1:
        return audio
    if audio.ndim == 2:
        rows, cols = audio.shape
        if cols <= MAX_CHANNELS < rows:
            return audio
        if rows <= MAX_CHANNELS < cols:
            return audio.T
    raise AudioError(
        f"audio array: expected (S,) or (S, C) samples (or channels-first (C, S)) with at most "
        f"{MAX_CHANNELS} channels, got shape {tuple(audio.shape)}"
    )


@dataclass
class Recognition:
    text: str
    words: list[WordTiming] | None = None  # with timestamps=True
    nbest: list[tuple[str, float]] | None = None  # (text, score) from beam search, best first
    error: str | None = None  # why the words could not be timed


@dataclass
class FileResult:
    path: str
    text: str | None  # None when the file could not be transcribed
    error: str | None = None  # one line naming the file and the cause
    words: list[WordTiming] | None = None
    nbest: list[tuple[str, float]] | None = None
    # a long file's segments in time order, each with its own text (None for a short file)
    segments: list[Segment] | None = None


class Transcriber:
    """CTC transcription with a trained recogniser: greedy, or beam search with `decoder`.

    `Transcriber.from_checkpoint("exp/fsdd/best.pt").transcribe("7_theo_3.wav")` -> "seven".
    `model` is a `Recogniser` (run by a `TorchRunner` on `device` at `precision`) or a ready
    `ModelRunner` such as `asr.export.OnnxRunner` (`device` and `precision` then unused).
    """

    def __init__(
        self,
        model: Recogniser | ModelRunner,
        tokenizer: Tokenizer,
        device: torch.device | str = "cpu",
        precision: str = "auto",
        batch_seconds: float = 200.0,
        num_workers: int = 0,
        decoder: BeamSearchDecoder | None = None,
        long_seconds: float = 30.0,
        segmenter: SegmenterConfig | None = None,
    ):
        self.model = model
        self.runner: ModelRunner = (
            TorchRunner(model, device, precision) if isinstance(model, nn.Module) else model
        )
        self.tokenizer = tokenizer
        self.batch_seconds = batch_seconds
        self.num_workers = num_workers
        self.decoder = decoder  # None: greedy
        # files longer than this are cut at pauses (asr.segmenter) instead of loaded whole
        self.long_seconds = long_seconds
        self.segmenter = segmenter or SegmenterConfig()
        self.notes: list[str] = []  # what the user should know about the decoder's settings
        self._rate_warned = False  # a SampleRateWarning was given

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "auto",
        lm: str | Path | None = None,
        lexicon: str | Path | None = None,
        **kwargs,
    ) -> Transcriber:
        """Greedy decoding, or beam search with an LM folder/file and/or a lexicon, using the
        decoder values `asr tune-decoder` stored in the checkpoint for that LM.

        A `.onnx` file from `asr export` runs in onnxruntime on the CPU (`device` is ignored).
        """
        if Path(path).suffix.lower() != ".onnx":
            return cls.from_state(load_checkpoint(path), device, lm, lexicon, **kwargs)
        from asr.export import load_onnx  # onnxruntime: the optional `onnx` extra

        runner, tokenizer, meta = load_onnx(path)
        options = kwargs.pop("decoder_options", None)
        transcriber = cls(runner, tokenizer, **kwargs)
        return transcriber._with_decoder(lm, lexicon, tuned_settings(meta), options)

    @classmethod
    def from_state(
        cls,
        state: dict,
        device: str = "auto",
        lm: str | Path | None = None,
        lexicon: str | Path | None = None,
        decoder_options: dict | None = None,
        **kwargs,
    ) -> Transcriber:
        """From a loaded checkpoint dict (see asr.checkpoint.load_checkpoint).

        `decoder_options`: beam_size, lm_weight, word_score, nbest (see
        asr.decoding.choose.make_decoder).
        """
        model, tokenizer = recogniser_from_state(state)
        transcriber = cls(model, tokenizer, pick_device(device), **kwargs)
        transcriber._with_decoder(lm, lexicon, tuned_settings(state), decoder_options)
        return transcriber

    def _with_decoder(
        self,
        lm: str | Path | None,
        lexicon: str | Path | None,
        tuned: Sequence[dict],
        options: dict | None,
    ) -> Transcriber:
        """Beam search when an LM, a lexicon or decoder options are given; greedy otherwise."""
        if lm is not None or lexicon is not None or options:
            self.decoder, self.notes = make_decoder(
                self.tokenizer, resolve_lm(lm, lexicon), tuned, **(options or {})
            )
        return self

    @property
    def device(self) -> torch.device:
        return self.runner.device

    @property
    def sample_rate(self) -> int:
        return self.runner.sample_rate

    @property
    def frame_seconds(self) -> float:
        """Seconds per output frame: the feature hop times the front-end's time subsampling."""
        return self.runner.frame_seconds

    def log_probs(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) padded waveforms, (B,) lengths -> CPU float32 log-probs (B, T', V), (B,)."""
        return self.runner.log_probs(wavs, wav_lens)

    def log_prob_batches(self, sources: Sequence[AudioSource]) -> Iterator[LogProbBatch]:
        """The model's log-probs for files or utterances, in length-sorted batches of at most
        `batch_seconds`; each batch names the sources in it that could not be read."""
        return log_prob_batches(
            self.runner, sources, self.batch_seconds, self.num_workers, check=self._check_rate
        )

    def recognise(self, batch: LogProbBatch, timestamps: bool = False) -> list[Recognition]:
        """One recognition per utterance of `batch` (its errors are not decoded)."""
        return self.decode_log_probs(batch.log_probs, batch.lengths, timestamps)

    def decode_log_probs(
        self, log_probs: torch.Tensor, lengths: torch.Tensor, timestamps: bool = False
    ) -> list[Recognition]:
        """(B, T', V) log-probs, (B,) lengths -> B recognitions (words timed if asked).

        Word times and confidences come from the frame path that produced the words: the
        greedy path (each frame's best unit), or the beam search's best path.
        """
        if log_probs.shape[0] == 0:
            return []
        decoder = GreedyDecoder(self.tokenizer) if self.decoder is None else self.decoder
        out, paths = [], []
        for hyps in decoder.decode(log_probs, lengths):
            best = hyps[0] if hyps else Hypothesis("", [], 0.0, [0] * log_probs.shape[1])
            # n-best lists come from beam search; greedy has one answer
            nbest = None if self.decoder is None else [(h.text, h.score) for h in hyps]
            out.append(Recognition(best.text, nbest=nbest))
            paths.append(best.path)
        if timestamps and not isinstance(self.tokenizer, CharTokenizer):
            for rec in out:
                rec.error = "word timestamps need a model with character units (data.units=char)"
        elif timestamps:
            for b, rec in enumerate(out):
                n = int(lengths[b])
                self._time_words(rec, log_probs[b, :n], paths[b][:n])
        return out

    def _time_words(self, rec: Recognition, log_probs: torch.Tensor, path: list[int]) -> None:
        """Set `rec.words` from the frame path (T,) that produced `rec.text` and its log-probs
        (T, V); `rec.error` when the path does not spell the text."""
        space = self.tokenizer.tokens.index(" ") if " " in self.tokenizer.tokens else -1
        words = path_word_timings(
            log_probs, path, space, self.frame_seconds, tokens=self.tokenizer.tokens
        )
        spelt = [w.word for w in words]
        if spelt == rec.text.split():
            rec.words = words
        else:
            rec.error = (
                f"cannot time the words of {rec.text!r}: the decoder's path spells "
                f"{' '.join(spelt)!r}"
            )

    def decode_batch(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> list[str]:
        """(B, S) padded waveforms, (B,) lengths -> B transcripts."""
        return [r.text for r in self.recognise_batch(wavs, wav_lens)]

    def recognise_batch(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor, timestamps: bool = False
    ) -> list[Recognition]:
        """(B, S) padded waveforms, (B,) lengths -> B recognitions."""
        return self.decode_log_probs(*self.log_probs(wavs, wav_lens), timestamps=timestamps)

    def transcribe(
        self, audio: str | Path | np.ndarray | torch.Tensor, sample_rate: int | None = None
    ) -> str:
        """One file path (of any length), or an array at `sample_rate` -> text.

        An array is (S,), (S, C) or channels-first (C, S) (see `samples_first`). Audio at a
        lower rate than the model's is upsampled, with a `SampleRateWarning` (once per
        Transcriber). AudioError names a file that cannot be read or an array of another shape.
        """
        if isinstance(audio, str | Path):
            if self._is_long(audio):
                result = self.transcribe_long(audio)
                if result.text is None:
                    raise AudioError(result.error)
                return result.text
            self._check_rate(audio)
            wav = load_audio(audio, self.sample_rate)
        else:
            if sample_rate is None:
                raise ValueError("sample_rate is required when transcribing an array")
            if isinstance(audio, torch.Tensor):
                audio = audio.detach().cpu().numpy()
            self._warn_if_upsampled("audio array", sample_rate)
            array = samples_first(np.asarray(audio))
            wav = to_mono_resampled(array, sample_rate, self.sample_rate, "audio array")
        return self.decode_batch(wav[None], torch.tensor([len(wav)]))[0]

    def _check_rate(self, source: AudioSource) -> None:
        """`_warn_if_upsampled` for a file, by its header (until one warning is given)."""
        if self._rate_warned:
            return
        path = source.audio_filepath if isinstance(source, Utterance) else source
        try:
            rate = audio_sample_rate(path)
        except AudioError:
            return  # loading reports an unreadable file
        self._warn_if_upsampled(str(path), rate)

    def _warn_if_upsampled(self, name: str, rate: int) -> None:
        """A SampleRateWarning, once per Transcriber, for audio below the model's rate."""
        if rate < self.sample_rate and not self._rate_warned:
            self._rate_warned = True
            warnings.warn(
                f"{name}: {rate} Hz audio upsampled to the model's {self.sample_rate} Hz (it has "
                f"nothing above {rate // 2} Hz, unlike the audio the model was trained on: expect "
                "more errors); further audio at a lower rate is upsampled without this warning",
                SampleRateWarning,
                stacklevel=2,
            )

    def transcribe_files(
        self, paths: Sequence[AudioSource], timestamps: bool = False
    ) -> Iterator[FileResult]:
        """Transcribe many files (or utterances); one FileResult per source, in input order.

        Short sources are run in length-sorted batches and their results held until those
        before them are out; files longer than `long_seconds` are cut into segments at pauses
        (see `transcribe_long`) when their turn comes. A source that cannot be read gives a
        FileResult with the error; `path` is `source_name` of the source.
        """
        long = {
            i
            for i, source in enumerate(paths)
            if not isinstance(source, Utterance) and self._is_long(source)
        }
        short = [i for i in range(len(paths)) if i not in long]
        done: dict[int, FileResult] = {}
        next_out = 0
        for batch in self.log_prob_batches([paths[i] for i in short]):
            for err in batch.errors:
                done[short[err.index]] = FileResult(err.name, None, err.message)
            recognitions = self.recognise(batch, timestamps)
            for j, name, rec in zip(batch.indices, batch.names, recognitions, strict=True):
                if rec.error is not None:
                    done[short[j]] = FileResult(name, None, f"{name}: {rec.error}")
                else:
                    done[short[j]] = FileResult(name, rec.text, words=rec.words, nbest=rec.nbest)
            while next_out in done or next_out in long:
                if next_out in long:
                    yield self.transcribe_long(paths[next_out], timestamps)
                else:
                    yield done.pop(next_out)
                next_out += 1
        for i in range(next_out, len(paths)):  # only long files are left
            yield self.transcribe_long(paths[i], timestamps)

    def _is_long(self, path: str | Path) -> bool:
        """Over `long_seconds` by its header (False when unreadable: loading reports why)."""
        try:
            return audio_duration(path) > self.long_seconds
        except AudioError:
            return False

    def transcribe_long(self, path: str | Path, timestamps: bool = False) -> FileResult:
        """One file of any length, in bounded memory: cut at pauses, segments batched through
        the model, words and segments in time order with times from the start of the file.

        The text is the segments' texts joined by spaces; the n-best lists are per segment, so
        a long file has none. The error names the file (and the segment) that failed.
        """
        path = str(path)
        self._check_rate(path)
        try:
            segments = find_segments(path, self.segmenter)
        except AudioError as err:
            return FileResult(path, None, str(err))
        utts = [Utterance(path, s.end - s.start, "", offset=s.start) for s in segments]
        words: list[WordTiming] = []
        recognised: list[Recognition | None] = [None] * len(segments)
        for batch in self.log_prob_batches(utts):
            if batch.errors:  # a segment could not be read
                return FileResult(path, None, batch.errors[0].message)
            recognitions = self.recognise(batch, timestamps)
            for i, rec in zip(batch.indices, recognitions, strict=True):
                if rec.error is not None:
                    span = f"{segments[i].start:.2f}-{segments[i].end:.2f} s"
                    return FileResult(path, None, f"{path}: segment {span}: {rec.error}")
                recognised[i] = rec
        for segment, rec in zip(segments, recognised, strict=True):
            segment.text = rec.text
            for w in rec.words or []:
                words.append(
                    WordTiming(w.word, w.start + segment.start, w.end + segment.start, w.confidence)
                )
        text = " ".join(s.text for s in segments if s.text)
        return FileResult(path, text, words=words if timestamps else None, segments=segments)


def find_audio_files(inputs: Sequence[str | Path]) -> tuple[list[str], list[str]]:
    """Expand files and folders (recursively, known audio suffixes) -> (files, problems)."""
    files, problems = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                problems.append(
                    f"{path}: folder has no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})"
                )
            files += [str(p) for p in found]
        elif path.is_file():
            files.append(str(path))
        else:
            problems.append(f"{path}: no such file or folder")
    return files, problems
