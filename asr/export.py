"""ONNX export: the whole recogniser (log-mel features included) as one graph for onnxruntime.

`export_onnx(checkpoint, out)` writes `out.onnx`: inputs `wavs` (B, S) float32 and `wav_lens`
(B,) int64, outputs `log_probs` (B, T', V) and `lengths` (B,), batch and time axes dynamic.
What transcription needs besides the network (configs, tokenizer, tuned decoder values) rides
in the model's metadata as JSON under the key `rnn_asr`, so the file stands alone.

torch.stft's complex output cannot be exported by torch's TorchScript-based ONNX exporter, so
the exported copy computes the same power spectrogram with `return_complex=False` (the ONNX STFT
operator); the recurrent stack keeps its packed sequences, which become the `sequence_lens`
input of ONNX's GRU/LSTM/RNN operators: a short utterance gets the same output in any batch.

`OnnxRunner` runs such a file in onnxruntime (CPU) as an `asr.inference.ModelRunner`, the
interface a PyTorch recogniser is run behind too; `Transcriber.from_checkpoint("model.onnx")`
uses it.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from asr.checkpoint import CheckpointError, load_checkpoint, recogniser_from_state
from asr.config import ConfigError, known_fields
from asr.decoding.choose import tuned_settings
from asr.features import FeatureConfig
from asr.files import atomic_write_bytes
from asr.inference import frame_seconds
from asr.model import ModelConfig, Recogniser
from asr.tokenizers import Tokenizer, tokenizer_from_state

METADATA_KEY = "rnn_asr"  # metadata_props key of the JSON below
FORMAT_VERSION = 1
OPSET = 17  # the first opset with an STFT operator
TOLERANCE = 1e-4  # largest |log-prob difference| to PyTorch that export accepts
INSTALL_HINT = 'pip install -e ".[onnx]"'


class _ExportableMel(nn.Module):
    """torchaudio's MelSpectrogram (centred, zero-padded, power 2) without complex tensors.

    forward(wavs (B, S), frame_lens) -> mel power (B, n_mels, T), T = S // hop + 1, the same
    values; every frame is computed (frame_lens is not used: a traced graph has no loop that
    depends on the data).
    """

    def __init__(self, mel: torchaudio.transforms.MelSpectrogram):
        super().__init__()
        spec = mel.spectrogram
        if not (spec.center and spec.pad_mode == "constant" and spec.power == 2.0):
            raise ValueError("export supports centred, zero-padded power spectrograms only")
        if spec.normalized or spec.pad or not spec.onesided:
            raise ValueError("export supports one-sided, unnormalised spectrograms only")
        self.n_fft, self.hop_length = spec.n_fft, spec.hop_length
        # torch.stft centres a short window in n_fft; do it here so the exporter need not.
        left = (spec.n_fft - spec.win_length) // 2
        right = spec.n_fft - spec.win_length - left
        self.register_buffer("window", F.pad(spec.window, (left, right)))
        self.register_buffer("fb", mel.mel_scale.fb.clone())  # (n_fft // 2 + 1, n_mels)

    def forward(self, wavs: torch.Tensor, frame_lens: torch.Tensor | None = None) -> torch.Tensor:
        x = F.pad(wavs, (self.n_fft // 2, self.n_fft // 2))  # centre=True with zeros
        spec = torch.stft(
            x,
            self.n_fft,
            self.hop_length,
            self.n_fft,
            self.window,
            center=False,
            return_complex=False,
        )  # (B, n_fft // 2 + 1, T, 2): real and imaginary parts
        power = spec.square().sum(-1)  # (B, F, T)
        return torch.matmul(power.transpose(1, 2), self.fb).transpose(1, 2)  # (B, n_mels, T)


def exportable_copy(model: Recogniser) -> Recogniser:
    """A copy of `model` in eval mode whose features the ONNX exporter can trace."""
    model = copy.deepcopy(model).cpu().float().eval()
    model.features.mel = _ExportableMel(model.features.mel)
    return model


def _probe_batch(sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three noise utterances of different lengths (1, 0.55, 0.23 s) in one padded batch."""
    generator = torch.Generator().manual_seed(0)
    lens = torch.tensor([sample_rate, int(0.55 * sample_rate), int(0.23 * sample_rate)])
    wavs = 0.1 * torch.randn(3, int(lens[0]), generator=generator)  # (B, S)
    wavs *= torch.arange(wavs.shape[1])[None] < lens[:, None]  # zero padding
    return wavs, lens


def _to_json(value):
    """Bytes (a SentencePiece model) become {"base64": ...}, recursively; the rest is kept."""
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return value


def _from_json(value):
    """Inverse of `_to_json`.

    >>> _from_json(_to_json({"model": b"\\x00\\xff", "units": ["a", "b"]}))
    {'model': b'\\x00\\xff', 'units': ['a', 'b']}
    """
    if isinstance(value, dict):
        if set(value) == {"base64"}:
            return base64.b64decode(value["base64"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def export_metadata(state: dict) -> dict:
    """What transcription reads from a checkpoint, in JSON-ready form."""
    return _to_json(
        {
            "version": FORMAT_VERSION,
            "config": {"features": state["config"]["features"], "model": state["config"]["model"]},
            "tokenizer": state["tokenizer"],
            "decoders": tuned_settings(state),  # `asr tune-decoder` values, one per LM
        }
    )


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2: the TorchScript exporter's C++ code prints that it cannot
    infer the shapes of packed sequences, which onnxruntime's check below makes moot."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _trace_to(
    buffer: io.BytesIO, model: Recogniser, wavs: torch.Tensor, lens: torch.Tensor
) -> None:
    """Trace `model` on the probe batch (B, S), (B,) into `buffer` as an ONNX graph."""
    torch.onnx.export(
        model,
        (wavs, lens),
        buffer,
        input_names=["wavs", "wav_lens"],
        output_names=["log_probs", "lengths"],
        dynamic_axes={
            "wavs": {0: "batch", 1: "samples"},
            "wav_lens": {0: "batch"},
            "log_probs": {0: "batch", 1: "frames"},
            "lengths": {0: "batch"},
        },
        opset_version=OPSET,
        dynamo=False,  # the TorchScript exporter turns packed sequences into sequence_lens
    )


def export_onnx(checkpoint: str | Path, out: str | Path) -> float:
    """Export the checkpoint's recogniser to `out` (.onnx) and check it in onnxruntime.

    Returns the largest |log-prob difference| to PyTorch on a padded batch of three lengths;
    raises CheckpointError (naming the file) when it exceeds TOLERANCE or a package is missing.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"{out}: the exported model's name must end in .onnx")
    try:
        import onnx
    except ImportError:
        raise CheckpointError(f"{out}: export needs the onnx package ({INSTALL_HINT})") from None
    state = load_checkpoint(checkpoint)
    model, _ = recogniser_from_state(state)
    traced = exportable_copy(model)
    wavs, lens = _probe_batch(model.features.cfg.sample_rate)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), _quiet_stderr():
        warnings.simplefilter("ignore")  # the exporter's notes on RNNs and its own deprecation
        try:
            _trace_to(buffer, traced, wavs, lens)
        except Exception as err:  # the exporter raises many types; say which model and why
            cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"{checkpoint}: cannot export to ONNX ({cause})") from None
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(export_metadata(state))
    proto.producer_name = "rnn-asr"
    data = proto.SerializeToString()
    difference = _max_difference(data, out, model, wavs, lens)
    if difference > TOLERANCE:
        raise CheckpointError(
            f"{out}: not written, the ONNX graph differs from PyTorch by {difference:.2e} "
            f"(more than {TOLERANCE:g})"
        )
    atomic_write_bytes(out, data)
    return difference


def _max_difference(
    data: bytes, name: Path, model: Recogniser, wavs: torch.Tensor, lens: torch.Tensor
) -> float:
    """Largest |log-prob difference| between the serialised graph and `model` (valid frames)."""
    runner = OnnxRunner(_session(data, name), model.features.cfg, model.acoustic.cfg)
    with torch.no_grad():
        expected, lengths = model(wavs, lens)
    got, got_lengths = runner.log_probs(wavs, lens)
    if not torch.equal(lengths, got_lengths) or expected.shape != got.shape:
        return float("inf")
    valid = torch.arange(expected.shape[1])[None, :] < lengths[:, None]  # (B, T')
    return float((expected - got).abs()[valid].max())


def _session(model: bytes | Path, name: Path):
    """An onnxruntime CPU session using as many threads as torch does (OMP_NUM_THREADS)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise CheckpointError(f"{name}: ONNX models need onnxruntime ({INSTALL_HINT})") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types for foreign or corrupt files
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{name}: not a readable ONNX model ({cause})") from None


class OnnxRunner:
    """An exported recogniser run by onnxruntime on the CPU: an `asr.inference.ModelRunner`.

    `log_probs(wavs (B, S), wav_lens (B,))` -> CPU float32 log-probs (B, T', V), lengths (B,).
    `feature_cfg` and `model_cfg` are the configs the graph was exported with.
    """

    device = torch.device("cpu")

    def __init__(self, session, feature_cfg: FeatureConfig, model_cfg: ModelConfig):
        self.session = session
        self.feature_cfg = feature_cfg
        self.model_cfg = model_cfg

    @property
    def sample_rate(self) -> int:
        return self.feature_cfg.sample_rate

    @property
    def frame_seconds(self) -> float:
        return frame_seconds(self.feature_cfg, self.model_cfg)

    def log_probs(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs, lengths = self.session.run(
            None,
            {
                "wavs": wavs.detach().float().cpu().numpy(),
                "wav_lens": wav_lens.detach().long().cpu().numpy(),
            },
        )
        return torch.from_numpy(log_probs), torch.from_numpy(lengths)


def load_onnx(path: str | Path) -> tuple[OnnxRunner, Tokenizer, dict]:
    """(runner, tokenizer, metadata) of a file from `export_onnx`; the metadata holds the
    configs, the tokenizer state and the tuned decoder values (`decoders`) as a checkpoint does.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX model")
    session = _session(path, path)
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if text is None:
        raise CheckpointError(f"{path}: an ONNX model without rnn-asr metadata (use `asr export`)")
    try:
        meta = _from_json(json.loads(text))
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"format version {meta.get('version')}, expected {FORMAT_VERSION}")
        # options removed since the export are passed over when off, named when on
        features = known_fields("features", meta["config"]["features"], str(path))
        feature_cfg = FeatureConfig(**features)
        model_cfg = ModelConfig(**known_fields("model", meta["config"]["model"], str(path)))
        tokenizer = tokenizer_from_state(meta["tokenizer"])
    except ConfigError as err:  # names the file and the option
        raise CheckpointError(str(err)) from None
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: unusable rnn-asr metadata ({err})") from None
    return OnnxRunner(session, feature_cfg, model_cfg), tokenizer, meta
