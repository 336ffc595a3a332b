"""The `asr` command: thin argument parsing over the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from asr import __version__
from asr.audio import AudioError
from asr.checkpoint import CheckpointError
from asr.config import ConfigError
from asr.data import ManifestError
from asr.datasets import Dataset, DatasetError, Option
from asr.decoding.beam import BeamConfig, DecoderError
from asr.files import DownloadError, atomic_write_text
from asr.tokenizers import TokenizerError

# Errors whose message already names the file and the cause: printed as one line, exit 1.
USER_ERRORS = (
    AudioError,
    CheckpointError,
    ConfigError,
    DatasetError,
    DecoderError,
    DownloadError,
    ManifestError,
    TokenizerError,
    FileExistsError,
    FileNotFoundError,
    ValueError,
)


def _fail(message: str) -> int:
    print(f"asr: error: {message}", file=sys.stderr)
    return 1


def _user_message(err: Exception) -> str:
    """The error's message; for one a DataLoader worker raised (torch re-raises it in the main
    process with the worker's traceback as its text), only the original one-line message."""
    text = str(err)
    if "\nOriginal Traceback" in text:
        last = text.rstrip().splitlines()[-1]  # "package.module.ErrorType: message"
        return last.split(": ", 1)[-1]
    return text


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on the manifests `asr prepare` wrote, or from a config file",
        description="Train a model. --data DIR reads DIR/train.jsonl and DIR/dev.jsonl (what "
        "`asr prepare` writes) with settings sized to the hours of training audio; --config "
        "FILE and section.key=value overrides set any field of asr/config.py's dataclasses "
        "(they win over the sized settings).",
    )
    p.add_argument(
        "--data",
        metavar="DIR",
        help="folder with train.jsonl and dev.jsonl (from `asr prepare`): sets the manifests, "
        "and the model, epochs and batch size to suit the amount of audio",
    )
    p.add_argument("--config", help="YAML config (sections data, features, model, train, ...)")
    p.add_argument("--out-dir", required=True, help="experiment folder for checkpoints and logs")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt")
    p.add_argument(
        "--results",
        help='also record the wall time under "training" in this results.json (summed over '
        "the first run and each --resume)",
    )
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from asr.config import config_for_data, describe_run, load_config
    from asr.train import TrainingError, TrainingStopped, train

    speaks = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 speaks for all
    if args.resume and (args.config is not None or args.data is not None):
        given = "--config" if args.config is not None else "--data"
        return _fail(f"{given} cannot be combined with --resume: the checkpoint carries its config")
    cfg = None
    if not args.resume:
        base, why = config_for_data(args.data) if args.data is not None else (None, None)
        cfg = load_config(args.config, args.overrides, base=base)
        dev = Path(args.data or ".") / "dev.jsonl"
        if args.data is not None and not cfg.data.dev_manifest and not dev.is_file():
            return _fail(
                f"{dev}: no such manifest; training measures its WER to keep the best "
                "checkpoint: prepare the data again with a --dev-fraction above 0, or give "
                "data.dev_manifest=FILE"
            )
        if why and speaks:
            print(f"{why}: {describe_run(cfg)} (--config and section.key=value set any field)")
    try:
        start = time.monotonic()
        result = train(cfg, args.out_dir, resume=args.resume, overrides=args.overrides)
    except TrainingError as err:
        return _fail(str(err))
    except TrainingStopped as stop:
        if speaks:
            print(str(stop), file=sys.stderr)
        return 128 + stop.signal  # the shell's code for a process ended by that signal
    if not speaks:
        return 0
    if args.results:
        _record_training(Path(args.results), round(time.monotonic() - start), args.resume)
    p = result.progress
    print(
        f"done: {p.step} steps, {p.elapsed / 60:.1f} min; best dev WER {100 * p.best_wer:.2f}% "
        f"at step {p.best_step}; checkpoints in {result.out_dir}"
    )
    return 0


def _add_model_arguments(p: argparse.ArgumentParser, onnx: bool = True) -> None:
    what = "checkpoint (.pt) written by `asr train`"
    if onnx:
        what += ", or a model (.onnx) written by `asr export`"
    p.add_argument("--model", required=True, help=what)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument(
        "--batch-seconds",
        type=float,
        default=200.0,
        help="padded audio seconds per batch (default 200)",
    )


def _add_decoder_arguments(p: argparse.ArgumentParser, tuning: bool = False) -> None:
    g = p.add_argument_group("beam search (default: greedy decoding)")
    g.add_argument(
        "--lm",
        help="n-gram LM: a folder from `asr lm build`, or an ARPA / KenLM binary file "
        "(word-level with a lexicon, character-level without)",
    )
    g.add_argument(
        "--lexicon",
        help="words the decoder may output (first column of each line; default: the LM "
        "folder's lexicon); alone, a lexicon-constrained search without LM",
    )
    g.add_argument(
        "--beam-size",
        type=int,
        help=f"hypotheses kept per frame (default {BeamConfig.beam_size}; needs --lm or --lexicon)",
    )
    if not tuning:
        g.add_argument("--lm-weight", type=float, help="LM weight (default: tuned, or 0.5)")
        g.add_argument(
            "--word-score", type=float, help="word insertion bonus (default: tuned, or 0)"
        )


def _transcriber(args: argparse.Namespace, nbest: int = 1):
    """The checkpoint's (or exported .onnx model's) transcriber, with beam search when --lm or
    --lexicon is given."""
    from asr.transcribe import Transcriber

    options = {"beam_size": args.beam_size, "lm_weight": args.lm_weight}
    options.update(word_score=args.word_score, nbest=nbest)
    transcriber = Transcriber.from_checkpoint(
        args.model,
        device=args.device,
        lm=args.lm,
        lexicon=args.lexicon,
        decoder_options=options,
        batch_seconds=args.batch_seconds,
    )
    for note in transcriber.notes:
        print(f"asr: note: {note}", file=sys.stderr)
    return transcriber


SUFFIXES = {"text": ".txt", "json": ".json", "srt": ".srt", "vtt": ".vtt"}


def _render(result, fmt: str, to_file: bool) -> str:
    """One transcribed file in the chosen format."""
    from asr.subtitles import group_cues, to_json_record, to_srt, to_vtt

    if fmt == "text":
        return f"{result.text}\n" if to_file else f"{result.path}\t{result.text}\n"
    if fmt == "json":
        record = to_json_record(
            result.path, result.text, result.words, result.nbest, result.segments
        )
        return json.dumps(record, ensure_ascii=False, indent=2 if to_file else None) + "\n"
    cues = group_cues(result.words)
    return to_srt(cues) if fmt == "srt" else to_vtt(cues)


def _output_paths(files: list[str], out_dir: Path, fmt: str) -> dict[str, Path]:
    """OUT_DIR/<input name><suffix> per input; two inputs with the same name are refused."""
    outputs: dict[str, Path] = {}
    taken: dict[Path, str] = {}
    for f in files:
        out = out_dir / (Path(f).stem + SUFFIXES[fmt])
        if out in taken:
            raise ValueError(f"{taken[out]} and {f} would both write {out}: transcribe them apart")
        taken[out] = f
        outputs[f] = out
    return outputs


def add_transcribe_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transcribe", help="transcribe audio files or folders, or a live stream")
    _add_model_arguments(p)
    _add_decoder_arguments(p)
    p.add_argument("inputs", nargs="*", metavar="FILE_OR_DIR")
    p.add_argument(
        "--format",
        choices=list(SUFFIXES),
        default="text",
        help="text: FILE<TAB>TEXT per line; json: one JSON object per line with word times, "
        "confidences and n-best; srt/vtt: subtitles (one file per input with --out-dir)",
    )
    p.add_argument("--out-dir", help="write one file per input here instead of printing")
    p.add_argument("--nbest", type=int, default=1, help="hypotheses in the JSON (beam search)")
    g = p.add_argument_group("long files (cut at pauses found by voice-activity detection)")
    g.add_argument(
        "--long-seconds",
        type=float,
        default=30.0,
        help="files longer than this are read in blocks and cut at pauses (default 30)",
    )
    g.add_argument(
        "--max-segment-seconds",
        type=float,
        default=20.0,
        help="longest segment; longer speech is cut at its quietest point (default 20)",
    )
    g.add_argument(
        "--vad-aggressiveness",
        type=int,
        choices=[0, 1, 2, 3],
        default=3,
        help="WebRTC VAD mode: 0 keeps the most audio as speech, 3 the least (default 3)",
    )
    g = p.add_argument_group("live streaming (partials on a terminal, a final per segment)")
    g.add_argument(
        "--stream",
        action="store_true",
        help="recognise as the audio arrives: raw 16-bit mono PCM from stdin, or one FILE",
    )
    g.add_argument(
        "--rate", type=int, help="Hz of the PCM on stdin (default: the model's; resampled)"
    )
    g.add_argument(
        "--realtime", action="store_true", help="play FILE at real-time pace (implies --stream)"
    )
    g.add_argument(
        "--endpoint-silence",
        type=float,
        default=0.5,
        help="seconds of silence that end a segment (default 0.5)",
    )
    p.set_defaults(func=cmd_transcribe)


def cmd_transcribe(args: argparse.Namespace) -> int:
    from asr.segmenter import SegmenterConfig
    from asr.transcribe import find_audio_files

    if args.stream or args.realtime:
        return _transcribe_stream(args)
    if not args.inputs:
        return _fail("give files or folders to transcribe (or --stream to read PCM from stdin)")
    if args.rate is not None:
        return _fail("--rate is for raw PCM on stdin (--stream)")
    files, problems = find_audio_files(args.inputs)
    if args.format in ("srt", "vtt") and args.out_dir is None and len(files) > 1:
        return _fail(f"--format {args.format} with several files needs --out-dir")
    if args.nbest > 1 and args.lm is None and args.lexicon is None:
        return _fail("--nbest needs beam search (--lm and/or --lexicon)")
    outputs = _output_paths(files, Path(args.out_dir), args.format) if args.out_dir else {}
    if args.max_segment_seconds < 4:
        return _fail("--max-segment-seconds must be at least 4")
    transcriber = _transcriber(args, nbest=args.nbest)
    transcriber.long_seconds = args.long_seconds
    transcriber.segmenter = SegmenterConfig(
        aggressiveness=args.vad_aggressiveness,
        max_seconds=args.max_segment_seconds,
        min_seconds=min(2.0, args.max_segment_seconds / 4),
    )
    timestamps = args.format != "text"
    written = 0
    for r in transcriber.transcribe_files(files, timestamps=timestamps):  # (in input order)
        if r.error is not None:
            problems.append(r.error)
        elif args.out_dir:
            atomic_write_text(outputs[r.path], _render(r, args.format, to_file=True))
            written += 1
        else:
            sys.stdout.write(_render(r, args.format, to_file=False))
            written += 1
    if args.out_dir:
        print(f"asr: wrote {written} {args.format} file(s) to {args.out_dir}", file=sys.stderr)
    for line in problems:
        print(f"asr: skipped {line}", file=sys.stderr)
    if problems:
        print(f"asr: {len(problems)} input(s) failed, {written} transcribed", file=sys.stderr)
    return 1 if problems else 0


def _stream_problem(args: argparse.Namespace) -> str | None:
    """Why the options cannot stream, or None."""
    if len(args.inputs) > 1:
        return "--stream takes one FILE, or none to read raw 16-bit PCM from stdin"
    if args.realtime and not args.inputs:
        return "--realtime plays a FILE: name one"
    if args.inputs and args.rate is not None:
        return "--rate is for raw PCM on stdin: a FILE's header gives its rate"
    if args.rate is not None and args.rate <= 0:
        return f"--rate must be a positive number of Hz, got {args.rate}"
    if args.format not in ("text", "json"):
        return "--stream writes --format text or json"
    if args.out_dir is not None or args.nbest > 1:
        return "--stream prints its results: --out-dir and --nbest do not apply"
    return None


def _transcribe_stream(args: argparse.Namespace) -> int:
    """`asr transcribe --stream`: finals one per line, partials on the terminal's last line."""
    import numpy as np

    from asr.stream import StreamingRecognizer

    problem = _stream_problem(args)
    if problem is not None:
        return _fail(problem)
    options = {"beam_size": args.beam_size, "lm_weight": args.lm_weight}
    options.update(word_score=args.word_score)
    recognizer = StreamingRecognizer.from_checkpoint(
        args.model,
        lm=args.lm,
        lexicon=args.lexicon,
        device=args.device,
        endpoint_silence=args.endpoint_silence,
        max_segment_seconds=args.max_segment_seconds,
        vad_aggressiveness=args.vad_aggressiveness,
        decoder_options=options,
    )
    for note in recognizer.transcriber.notes:
        print(f"asr: note: {note}", file=sys.stderr)
    rate = recognizer.sample_rate
    if args.inputs:
        chunks = _file_chunks(args.inputs[0], rate, args.realtime)
    else:
        chunks = _stdin_chunks(sys.stdin.buffer, args.rate or rate, rate)
    show = _StreamPrinter(args.format, live=sys.stdout.isatty())
    nothing = np.zeros(0, np.float32)
    try:
        for chunk in chunks:
            ready = recognizer.accept_waveform(chunk)
            while ready:  # one chunk may finish several segments
                show.final(recognizer.final())
                ready = recognizer.accept_waveform(nothing)
            show.partial(recognizer.partial())
    except KeyboardInterrupt:
        for result in recognizer.finish():
            show.final(result)
        return 130
    for result in recognizer.finish():
        show.final(result)
    show.partial("")
    return 0


STREAM_CHUNK_SECONDS = 0.1  # audio read and recognised at a time by `transcribe --stream`


def _stdin_chunks(stdin, rate: int, model_rate: int):
    """Raw little-endian 16-bit mono PCM at `rate` -> float32 chunks at `model_rate`, as it
    arrives (each read returns what is there, up to STREAM_CHUNK_SECONDS)."""
    import numpy as np
    import soxr

    resampler = None if rate == model_rate else soxr.ResampleStream(rate, model_rate, 1)
    size = 2 * max(1, round(rate * STREAM_CHUNK_SECONDS))
    odd = b""
    while True:
        data = stdin.read1(size) if hasattr(stdin, "read1") else stdin.read(size)
        data = odd + data
        whole = len(data) - len(data) % 2
        odd = data[whole:]
        samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) / 32768.0
        if resampler is not None:
            samples = resampler.resample_chunk(samples, last=not data)
        if len(samples):
            yield samples
        if not data:
            return


def _file_chunks(path: str, rate: int, realtime: bool):
    """A file's audio at `rate` in chunks of STREAM_CHUNK_SECONDS; with `realtime`, each
    chunk no sooner than the moment it would be heard if the file played from the start."""
    from asr.audio import read_blocks

    start, played = time.monotonic(), 0
    for block in read_blocks(path, rate, STREAM_CHUNK_SECONDS):
        if realtime:
            time.sleep(max(0.0, start + (played + len(block)) / rate - time.monotonic()))
        played += len(block)
        yield block


class _StreamPrinter:
    """Finals on stdout one per line (text, or JSON lines); with `live` (a terminal) the
    partial result overwrites the last line."""

    def __init__(self, fmt: str, live: bool):
        import shutil

        self.fmt = fmt
        self.live = live
        self.width = shutil.get_terminal_size().columns - 1
        self.shown = ""  # the partial on the terminal's line

    def partial(self, text: str) -> None:
        if self.live and text != self.shown:
            sys.stdout.write("\r\033[K" + text[-self.width :])
            sys.stdout.flush()
            self.shown = text

    def final(self, result) -> None:
        if self.live and self.shown:
            sys.stdout.write("\r\033[K")
            self.shown = ""
        if self.fmt == "json":
            words = [
                {
                    "word": w.word,
                    "start": round(w.start, 3),
                    "end": round(w.end, 3),
                    "conf": round(w.conf, 3),
                }
                for w in result.words
            ]
            record = {
                "text": result.text,
                "start": round(result.start, 3),
                "end": round(result.end, 3),
                "words": words,
            }
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(result.text + "\n")
        sys.stdout.flush()


def add_tune_decoder_parser(sub: argparse._SubParsersAction) -> None:
    from asr.tune import DEFAULT_LM_WEIGHTS, DEFAULT_WORD_SCORES

    p = sub.add_parser("tune-decoder", help="tune LM weight and word bonus on a dev manifest")
    _add_model_arguments(p, onnx=False)  # the tuned values are stored in the checkpoint
    _add_decoder_arguments(p, tuning=True)
    p.add_argument("--manifest", required=True, help="dev manifest (JSON lines with text)")
    p.add_argument(
        "--lm-weights",
        default=",".join(f"{w:g}" for w in DEFAULT_LM_WEIGHTS),
        help="comma-separated LM weights (%(default)s)",
    )
    p.add_argument(
        "--word-scores",
        default=",".join(f"{w:g}" for w in DEFAULT_WORD_SCORES),
        help="comma-separated word bonuses (%(default)s)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the best values, store nothing")
    p.set_defaults(func=cmd_tune_decoder)


def cmd_tune_decoder(args: argparse.Namespace) -> int:
    from asr.checkpoint import load_checkpoint
    from asr.data import read_manifest
    from asr.decoding.choose import resolve_lm
    from asr.transcribe import Transcriber
    from asr.tune import store_settings, tune_decoder

    if args.lm is None and args.lexicon is None:
        return _fail("tune-decoder needs --lm and/or --lexicon")
    if Path(args.model).suffix == ".onnx":
        return _fail(
            f"{args.model}: the tuned values are stored in a .pt checkpoint: tune the "
            "checkpoint, then export it (the export carries them)"
        )
    utts = read_manifest(args.manifest)
    choice = resolve_lm(args.lm, args.lexicon)
    transcriber = Transcriber.from_state(
        load_checkpoint(args.model), device=args.device, batch_seconds=args.batch_seconds
    )
    result = tune_decoder(
        transcriber,
        utts,
        choice,
        lm_weights=_floats(args.lm_weights),
        word_scores=_floats(args.word_scores),
        beam_size=args.beam_size or BeamConfig.beam_size,
        progress=sys.stderr.isatty(),
    )
    s = result.settings
    s.dev_manifest = str(args.manifest)
    print(
        f"best: lm_weight {s.lm_weight}, word_score {s.word_score}: dev WER {100 * s.dev_wer:.2f}% "
        f"(greedy {100 * s.greedy_dev_wer:.2f}%, {len(s.grid)} settings tried)"
    )
    if not args.dry_run:
        store_settings(args.model, s)
        print(f"stored in {args.model}: `asr transcribe --model {args.model} --lm ...` uses them")
    for line in result.failures:
        print(f"asr: skipped {line}", file=sys.stderr)
    return 1 if result.failures else 0


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"not a comma-separated list of numbers: {text!r}") from None


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="WER and CER of a model on a manifest")
    _add_model_arguments(p)
    _add_decoder_arguments(p)
    p.add_argument("--manifest", required=True, help="JSON-lines manifest with reference text")
    p.add_argument(
        "--out-dir",
        help="where errs-NAME.txt and summary-NAME.json go (default: the checkpoint's folder)",
    )
    p.add_argument("--name", help="test set name (default: the manifest's file name)")
    p.add_argument("--results", help="also add this test set's figures to this results.json")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from asr.evaluate import evaluate_utterances
    from asr.metrics import write_report
    from asr.validate import refuse_problems, validate_manifest

    # Line errors refuse the manifest; an unreadable audio file is one failed utterance.
    validation = validate_manifest(args.manifest)
    refuse_problems(validation, audio=False)
    utts = validation.usable(audio_problems=True)
    transcriber = _transcriber(args)
    result = evaluate_utterances(transcriber, utts, progress=sys.stderr.isatty())
    out_dir = Path(args.out_dir) if args.out_dir else Path(args.model).parent
    name = args.name or Path(args.manifest).stem
    s = result.score
    extra = {
        "manifest": str(args.manifest),
        "model": str(args.model),
        "failed": len(result.failures),
        "seconds": round(result.seconds, 2),
        "decoder": _describe_decoder(transcriber.decoder, args),
    }
    report, summary = write_report(out_dir, name, result.utterances, s, extra)
    print(
        f"{name}: WER {100 * s.wer:.2f}%  CER {100 * s.cer:.2f}%  ({s.utterances} utterances, "
        f"{result.seconds:.1f} s)"
    )
    print(f"report: {report}\nsummary: {summary}")
    if args.results:
        _update_results(
            Path(args.results),
            name,
            {
                "wer": s.wer,
                "cer": s.cer,
                "utterances": s.utterances,
                "failed": len(result.failures),
                "seconds": round(result.seconds, 2),
            },
        )
    for line in result.failures:
        print(f"asr: skipped {line}", file=sys.stderr)
    if result.failures:
        print(
            f"asr: {len(result.failures)} utterance(s) failed, {s.utterances} scored",
            file=sys.stderr,
        )
    return 1 if result.failures else 0


def _describe_decoder(decoder, args: argparse.Namespace) -> dict:
    if decoder is None:
        return {"type": "greedy"}
    cfg = decoder.cfg
    return {
        "type": "beam",
        "lm": args.lm,
        "lexicon": args.lexicon,
        "beam_size": cfg.beam_size,
        "lm_weight": cfg.lm_weight if args.lm is not None else None,  # no LM: none acts
        "word_score": cfg.word_score,
    }


def _record_training(path: Path, seconds: int, resumed: bool) -> None:
    """The "training" entry of a results.json: wall seconds summed over the first run and every
    --resume after it, the last run's seconds, and the number of runs."""
    results = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    before = results.get("training", {}) if resumed else {}
    entry = {
        "wall_seconds": before.get("wall_seconds", 0) + seconds,
        "last_run_seconds": seconds,
        "runs": before.get("runs", 0) + 1,
    }
    _update_results(path, "training", entry)


def _update_results(path: Path, name: str, entry: dict) -> None:
    """Add/replace one test set's entry in a results.json shared by a recipe's evaluations."""
    results = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    results[name] = entry
    atomic_write_text(path, json.dumps(results, indent=2, sort_keys=True) + "\n")


def add_validate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="list every problem of a manifest, one per line",
        description="Check manifests line by line (JSON, fields, durations against the audio "
        "headers, duplicates, empty text; with --model, the vocabulary). Every problem is one "
        "line MANIFEST:LINE: CAUSE; the exit code is 1 when there is any.",
    )
    p.add_argument("manifests", nargs="+", metavar="MANIFEST", help="JSON-lines manifest(s)")
    p.add_argument("--model", help="checkpoint (.pt) whose vocabulary the text must fit")
    p.add_argument("--no-audio", action="store_true", help="do not read the audio headers")
    p.set_defaults(func=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    from asr.checkpoint import load_checkpoint
    from asr.tokenizers import tokenizer_from_state
    from asr.validate import validate_manifest

    tokenizer = None
    if args.model is not None:
        tokenizer = tokenizer_from_state(load_checkpoint(args.model)["tokenizer"])
    bad = 0
    for manifest in args.manifests:
        result = validate_manifest(manifest, tokenizer, check_audio=not args.no_audio)
        for problem in sorted(result.problems + result.notes, key=lambda p: p.line):
            print(problem)
        print(result.summary())
        bad += bool(result.problems)
    return 1 if bad else 0


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint for onnxruntime (ONNX)")
    p.add_argument("--model", required=True, help="checkpoint (.pt) written by `asr train`")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="(default onnx)")
    p.add_argument("--out", required=True, help="the exported model (.onnx)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from asr.export import export_onnx

    difference = export_onnx(args.model, args.out)
    print(f"wrote {args.out}: log-probs within {difference:.1e} of PyTorch's (onnxruntime, CPU)")
    return 0


def add_lm_parser(sub: argparse._SubParsersAction) -> None:
    from asr.lm import UNITS

    p = sub.add_parser("lm", help="n-gram language models (KenLM)")
    lm_commands = p.add_subparsers(dest="lm_command", required=True)
    d = lm_commands.add_parser("build", help="an ARPA + KenLM binary model (and lexicon) from text")
    d.add_argument(
        "--text",
        type=Path,
        nargs="+",
        required=True,
        help="UTF-8 text, one sentence a line, or a .jsonl manifest (its text fields); several "
        "are read one after the other",
    )
    d.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    d.add_argument("--out", type=Path, required=True, help="folder for the model files")
    d.add_argument(
        "--unit", choices=UNITS, default="word", help="words, or characters with | between words"
    )
    d.add_argument(
        "--spell",
        default=None,
        metavar="WORDS",
        help="also each word of this word list spelt letter by letter, a sentence each, for "
        "speakers who spell (AN4): a file with a word at the start of each line, or `cmudict` "
        "(pocketsphinx's CMU Pronouncing Dictionary, `pip install pocketsphinx`)",
    )
    d.add_argument(
        "--text-copies",
        type=_positive_int,
        default=1,
        metavar="N",
        help="count the --text sentences N times, so that a long --spell list does not "
        "outweigh them (default 1)",
    )
    _add_cache_argument(d)
    d.set_defaults(func=cmd_lm_build)
    d = lm_commands.add_parser(
        "words", help="check a --spell word list: how many words it spells, from which file"
    )
    d.add_argument("word_list", metavar="WORDS", help="a word-list file, or `cmudict`")
    d.set_defaults(func=cmd_lm_words)
    d = lm_commands.add_parser("install-kenlm", help="build KenLM's lmplz and build_binary")
    _add_cache_argument(d)
    d.set_defaults(func=cmd_lm_install)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _add_cache_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where KenLM is built if not on PATH (default $ASR_CACHE or ~/.cache/rnn-asr)",
    )


def cmd_lm_build(args: argparse.Namespace) -> int:
    from asr.lm import LM_JSON, build_lm, kenlm_tools, read_sentences
    from asr.spelling import spellable_words, word_list_path

    for text in args.text:
        read_sentences(text)  # a bad text fails now, not after a first KenLM build
    if args.spell is not None:
        spellable_words(word_list_path(args.spell))  # likewise
    tools = kenlm_tools(args.cache_dir)
    files = build_lm(
        args.text,
        args.out,
        order=args.order,
        unit=args.unit,
        tools=tools,
        spell=args.spell,
        text_copies=args.text_copies,
    )
    info = json.loads((args.out / LM_JSON).read_text(encoding="utf-8"))
    extra = f" (x{info['text_copies']})" if info["text_copies"] > 1 else ""
    if info["spell"] is not None:
        extra += f" and {info['spell']['words']} spelt words of {info['spell']['word_list']}"
    print(
        f"{files.order}-gram {files.unit} LM of {info['sentences']} sentences{extra}, "
        f"vocabulary {info['vocab_size']}"
    )
    for path in (files.arpa, files.binary, files.lexicon, args.out / LM_JSON):
        if path is not None:
            print(f"wrote {path}")
    return 0


def cmd_lm_words(args: argparse.Namespace) -> int:
    from asr.spelling import spellable_words, word_list_path

    path = word_list_path(args.word_list)
    print(f"{len(spellable_words(path))} words of two or more letters a-z in {path}")
    return 0


def cmd_lm_install(args: argparse.Namespace) -> int:
    from asr.lm import kenlm_tools

    tools = kenlm_tools(args.cache_dir)
    print(f"lmplz: {tools.lmplz}\nbuild_binary: {tools.build_binary}")
    return 0


def add_prepare_parser(sub: argparse._SubParsersAction) -> None:
    """`asr prepare NAME ...`: the dataset's own flags are parsed by `dataset_parser` once NAME
    is known, so only the dataset asked for is imported."""
    from asr.datasets import registered

    p = sub.add_parser(
        "prepare",
        help="download or make a dataset and write its manifests",
        description="Write the train/dev/test manifests of a registered dataset. "
        "`asr prepare NAME --help` gives the dataset's flags.",
        epilog=f"registered datasets: {', '.join(registered()) or 'none'}",
    )
    p.add_argument("--list", action="store_true", help="list the registered datasets")
    p.add_argument("dataset", nargs="?", metavar="NAME", help="the dataset (see --list)")
    p.add_argument(
        "dataset_args",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="--out-dir DIR, --source DIR or --download-dir DIR, and the dataset's options",
    )
    p.set_defaults(func=cmd_prepare)


def dataset_parser(spec: Dataset) -> argparse.ArgumentParser:
    """The flags of `asr prepare NAME`, from the dataset's record and its `Option`s."""
    p = argparse.ArgumentParser(prog=f"asr prepare {spec.name}", description=spec.summary)
    p.add_argument("--out-dir", required=True, metavar="DIR", help=spec.out_dir_help)
    if spec.takes_source:
        # `asr prepare folder DIR` or `asr prepare folder --source DIR`: the same
        p.add_argument("source_arg", nargs="?", metavar="SOURCE", help=spec.source_help)
        p.add_argument("--source", metavar="PATH", help="the same as SOURCE")
        download_help = "where to download and unpack it" if spec.download else argparse.SUPPRESS
        p.add_argument("--download-dir", metavar="DIR", help=download_help)
    else:  # accepted only to be refused with a clear message (see asr.datasets.prepare_dataset)
        p.add_argument("--source", help=argparse.SUPPRESS)
        p.add_argument("--download-dir", help=argparse.SUPPRESS)
    group = p.add_argument_group(f"{spec.name} options")
    for option in spec.options:
        if option.switch:
            group.add_argument(option.flag, dest=option.name, action="store_true", help=option.help)
            continue
        group.add_argument(
            option.flag,
            dest=option.name,
            type=_argument_type(option),
            default=option.default,
            choices=option.choices,
            metavar=option.metavar,
            help=option.help,
        )
    return p


def _argument_type(option: Option):
    """The option's converter, its ValueError shown as argparse's one-line message."""
    if option.type in (str, int, float):  # argparse words these itself: "invalid int value"
        return option.type

    def convert(text: str):
        try:
            return option.type(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = getattr(option.type, "__name__", option.name)
    return convert


def cmd_prepare(args: argparse.Namespace) -> int:
    from asr.datasets import load_dataset, prepare_dataset

    if args.list:
        return _list_datasets() if args.dataset is None else _fail("--list takes no NAME")
    if args.dataset is None:
        return _fail("prepare needs a dataset NAME (`asr prepare --list` shows them)")
    spec = load_dataset(args.dataset)
    opts = vars(dataset_parser(spec).parse_args(args.dataset_args))
    positional = opts.pop("source_arg", None)
    if positional is not None:
        if opts["source"] is not None:
            return _fail(f"prepare {spec.name}: give SOURCE or --source, not both")
        opts["source"] = positional
    where = {key: opts.pop(key) for key in ("source", "download_dir")}
    manifests = prepare_dataset(spec, opts.pop("out_dir"), **where, **opts)
    for name, path in manifests.items():
        print(f"{name}: {path}")
    summary = _prepared_counts(manifests, manifests.speakers or {})
    if summary:
        print(f"asr: {summary}", file=sys.stderr)
    return 0


def _prepared_counts(manifests: dict[str, Path], speakers: dict[str, int]) -> str:
    """What `asr prepare` wrote, in one line: "prepared N utterances (D): N1 train (S1
    speakers, D1), N2 dev (...), ...", speakers where known; empty when a manifest cannot be
    read.

    >>> import tempfile
    >>> from asr.data import Utterance, write_manifest
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_manifest(folder / "train.jsonl", [Utterance("a.wav", 30.0, "a")] * 3)
    >>> write_manifest(folder / "dev.jsonl", [Utterance("b.wav", 1.5, "b")])
    >>> splits = {"train": folder / "train.jsonl", "dev": folder / "dev.jsonl"}
    >>> _prepared_counts(splits, {"train": 2, "dev": 1})
    'prepared 4 utterances (1.5 min): 3 train (2 speakers, 1.5 min), 1 dev (1 speaker, 1.5 s)'
    >>> _prepared_counts({**splits, "test": folder / "none.jsonl"}, {})
    ''
    >>> _prepared_counts({**splits, "words": folder / "words.txt", "test": splits["dev"]}, {})
    'prepared 4 utterances (1.5 min): 3 train (1.5 min), 1 dev (1.5 s), 1 test (the dev set)'
    """
    parts, total_utts, total_s = [], 0, 0.0
    seen: dict[bytes, str] = {}  # manifest contents -> the set that had them first
    for name, path in manifests.items():
        if Path(path).suffix != ".jsonl":
            continue  # a word list or other file beside the manifests
        counted = _manifest_counts(Path(path))
        if counted is None:
            return ""
        utterances, seconds = counted
        same_as = seen.setdefault(Path(path).read_bytes(), name)
        if same_as != name:  # e.g. a corpus whose dev set is its training set
            parts.append(f"{utterances} {name} (the {same_as} set)")
            continue
        who = f"{_count(speakers[name], 'speaker')}, " if name in speakers else ""
        parts.append(f"{utterances} {name} ({who}{_duration(seconds)})")
        total_utts, total_s = total_utts + utterances, total_s + seconds
    if not parts:
        return ""
    return f"prepared {_count(total_utts, 'utterance')} ({_duration(total_s)}): {', '.join(parts)}"


def _manifest_counts(path: Path) -> tuple[int, float] | None:
    """(utterances, seconds) of a manifest, lines without a duration not counted; None when it
    cannot be read."""
    utterances, seconds = 0, 0.0
    try:
        with path.open(encoding="utf-8-sig") as f:
            for line in f:
                try:
                    seconds += float(json.loads(line)["duration"])
                except (ValueError, KeyError, TypeError):
                    continue
                utterances += 1
    except (OSError, UnicodeDecodeError):
        return None
    return utterances, seconds


def _count(n: int, noun: str) -> str:
    """`n` and the noun, in the plural unless `n` is 1.

    >>> _count(1, "speaker"), _count(2, "speaker")
    ('1 speaker', '2 speakers')
    """
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _duration(seconds: float) -> str:
    """Seconds in the unit that reads best.

    >>> _duration(42.04), _duration(150.0), _duration(11_880.0)
    ('42.0 s', '2.5 min', '3.30 h')
    """
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _list_datasets() -> int:
    """One line per registered dataset; one that cannot be loaded is named on stderr."""
    from asr.datasets import load_dataset, registered

    names = list(registered())
    width = max((len(name) for name in names), default=0)
    failed = 0
    for name in names:
        try:
            spec = load_dataset(name)
        except DatasetError as err:
            failed += _fail(str(err))
            continue
        print(f"{name:<{width}}  {_how_prepared(spec):<14}  {spec.summary}")
    return 1 if failed else 0


def _how_prepared(spec: Dataset) -> str:
    if not spec.takes_source:
        return "made here"
    return "downloads" if spec.download is not None else "needs --source"


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    from asr.serve.config import ServeConfig

    d = ServeConfig(model="")
    p = sub.add_parser(
        "serve",
        help="serve a model: OpenAI's transcription API over HTTP, Wyoming, and a web page",
        description="Serve a model over HTTP (POST /v1/audio/transcriptions as OpenAI's API, "
        "GET /v1/models, GET /health, the page at /, live transcription over a WebSocket at "
        "/v1/stream and / in Vosk's protocol) and/or Home Assistant's Wyoming protocol. "
        "Needs the serve extra: pip install 'rnn-asr[serve]'.",
    )
    p.add_argument(
        "--model",
        required=True,
        help="checkpoint (.pt) from `asr train`, or .onnx from `asr export`",
    )
    p.add_argument("--lm", help="n-gram LM folder or file: beam search (default greedy)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--model-name", help="the model's id in /v1/models (default FOLDER/FILE)")
    p.add_argument("--language", default=d.language, help="the model's language (default en)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--no-http", action="store_true", help="serve Wyoming only")
    p.add_argument(
        "--wyoming", metavar="URI", help="also serve Wyoming, e.g. tcp://127.0.0.1:10300"
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("ASR_API_KEY"),
        help="key every /v1 request must send as 'Authorization: Bearer KEY' "
        "(default $ASR_API_KEY; none: no key)",
    )
    g = p.add_argument_group("limits")
    g.add_argument("--max-upload-mb", type=float, default=d.max_upload_mb, help="(default 200)")
    g.add_argument(
        "--max-audio-seconds", type=float, default=d.max_audio_seconds, help="(default 14400)"
    )
    g.add_argument(
        "--max-queue",
        type=_positive_int,
        default=d.max_queue,
        help="requests in flight at once; more get 503 with Retry-After (default 64)",
    )
    g.add_argument(
        "--shutdown-seconds",
        type=float,
        default=d.shutdown_seconds,
        help="on SIGTERM, how long requests in flight may still take (default 30)",
    )
    g = p.add_argument_group("batching (the segments of all requests share model batches)")
    g.add_argument(
        "--max-batch-size", type=_positive_int, default=d.max_batch_size, help="(default 16)"
    )
    g.add_argument(
        "--max-batch-seconds",
        type=float,
        default=d.max_batch_seconds,
        help="padded audio seconds per batch (default 320)",
    )
    g.add_argument(
        "--max-wait-ms",
        type=float,
        default=d.max_wait_ms,
        help="how long a batch with room waits for more audio (default 10)",
    )
    g.add_argument(
        "--lanes",
        type=_positive_int,
        default=d.lanes,
        help="threads running the model, each on its share of the cores; with 2 or more, one "
        "only takes short files, so they never wait behind a long file (default 2)",
    )
    g = p.add_argument_group("live streams (WebSocket at /v1/stream and /, Vosk's protocol)")
    g.add_argument(
        "--max-streams",
        type=_positive_int,
        default=d.max_streams,
        help="streams open at once; more are closed with code 1013 (default 16)",
    )
    g.add_argument(
        "--stream-idle-seconds",
        type=float,
        default=d.stream_idle_seconds,
        help="close a stream that sends nothing for this long (default 30)",
    )
    g.add_argument(
        "--stream-endpoint-seconds",
        type=float,
        default=d.stream_endpoint_seconds,
        help="silence that ends a segment and sends its final result (default 0.5)",
    )
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from asr.serve.server import exposure_warnings, run_server
    except ModuleNotFoundError as err:
        return _fail(f"asr serve needs the serve extra: pip install 'rnn-asr[serve]' ({err})")
    from asr.serve.config import ServeConfig

    if args.no_http and not args.wyoming:
        return _fail("--no-http needs --wyoming URI (there would be nothing to serve)")
    if not Path(args.model).is_file():
        return _fail(f"{args.model}: no such model file")
    for flag in ("stream_idle_seconds", "stream_endpoint_seconds"):
        if getattr(args, flag) <= 0:
            name = "--" + flag.replace("_", "-")
            return _fail(f"{name} must be more than 0, not {getattr(args, flag)}")
    config = ServeConfig(
        model=args.model,
        lm=args.lm,
        device=args.device,
        model_name=args.model_name,
        language=args.language,
        api_key=args.api_key or None,
        max_upload_mb=args.max_upload_mb,
        max_audio_seconds=args.max_audio_seconds,
        max_queue=args.max_queue,
        max_batch_size=args.max_batch_size,
        max_batch_seconds=args.max_batch_seconds,
        max_wait_ms=args.max_wait_ms,
        lanes=args.lanes,
        shutdown_seconds=args.shutdown_seconds,
        max_streams=args.max_streams,
        stream_idle_seconds=args.stream_idle_seconds,
        stream_endpoint_seconds=args.stream_endpoint_seconds,
    )
    host = None if args.no_http else args.host
    for line in exposure_warnings(config, host, args.wyoming):
        print(f"asr: warning: {line}", file=sys.stderr)
    return run_server(config, host, args.port, args.wyoming)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr", description="Speech recognition with recurrent networks and CTC."
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (before the command)"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_transcribe_parser(sub)
    add_tune_decoder_parser(sub)
    add_evaluate_parser(sub)
    add_export_parser(sub)
    add_lm_parser(sub)
    add_prepare_parser(sub)
    add_validate_parser(sub)
    add_serve_parser(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one `asr: warning:` line (the library's warnings name the file and cause)."""
    print(f"asr: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # (restores the warning display on return)
            if not args.debug:
                warnings.showwarning = _show_warning
            return args.func(args)
    except KeyboardInterrupt:
        return 130
    except USER_ERRORS as err:
        if args.debug:
            raise
        return _fail(_user_message(err))
    except OSError as err:  # a permission, a full disk, a folder where a file was expected
        if args.debug:
            raise
        where = f"{err.filename}: " if err.filename else ""
        return _fail(f"{where}{err.strerror or err}")
    except Exception as err:
        if args.debug:
            raise
        return _fail(f"unexpected {type(err).__name__}: {err} (`asr --debug ...` shows where)")


if __name__ == "__main__":
    sys.exit(main())
