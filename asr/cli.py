"""The `asr` command: thin argument parsing over the library."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from asr.audio import AudioError
from asr.checkpoint import CheckpointError
from asr.config import ConfigError
from asr.data import ManifestError, atomic_write_text
from asr.text import TokenizerError

# Errors whose message already names the file and the cause: printed as one line, exit 1.
USER_ERRORS = (
    AudioError,
    CheckpointError,
    ConfigError,
    ManifestError,
    TokenizerError,
    FileExistsError,
    FileNotFoundError,
    ValueError,
)


def _fail(message: str) -> int:
    print(f"asr: error: {message}", file=sys.stderr)
    return 1


def cmd_train(args: argparse.Namespace) -> int:
    from asr.config import load_config
    from asr.train import train

    if args.config is None and not args.resume:
        return _fail("--config is required unless --resume")
    if args.config is not None and args.resume:
        return _fail("--config cannot be combined with --resume: the checkpoint carries its config")
    cfg = load_config(args.config, args.overrides) if not args.resume else None
    result = train(cfg, args.out_dir, resume=args.resume, overrides=args.overrides)
    p = result.progress
    print(
        f"done: {p.step} steps, {p.elapsed / 60:.1f} min; best dev WER {100 * p.best_wer:.2f}% "
        f"at step {p.best_step}; checkpoints in {result.out_dir}"
    )
    return 0


def _transcriber(args: argparse.Namespace):
    from asr.transcribe import Transcriber

    return Transcriber.from_checkpoint(
        args.model, device=args.device, batch_seconds=args.batch_seconds
    )


def cmd_transcribe(args: argparse.Namespace) -> int:
    from asr.transcribe import find_audio_files

    files, problems = find_audio_files(args.inputs)
    transcriber = _transcriber(args)
    order = {f: i for i, f in enumerate(files)}
    results = sorted(transcriber.transcribe_files(files), key=lambda r: order[r.path])
    for r in results:
        if r.error is not None:
            problems.append(r.error)
        elif args.format == "json":
            print(json.dumps({"file": r.path, "text": r.text}, ensure_ascii=False))
        else:
            print(f"{r.path}\t{r.text}")
    for line in problems:
        print(f"asr: skipped {line}", file=sys.stderr)
    if problems:
        done = sum(r.error is None for r in results)
        print(f"asr: {len(problems)} input(s) failed, {done} transcribed", file=sys.stderr)
    return 1 if problems else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from asr.data import read_manifest
    from asr.evaluate import evaluate_utterances
    from asr.metrics import write_report

    utts = read_manifest(args.manifest)
    result = evaluate_utterances(_transcriber(args), utts, progress=sys.stderr.isatty())
    out_dir = Path(args.out_dir) if args.out_dir else Path(args.model).parent
    name = args.name or Path(args.manifest).stem
    s = result.score
    extra = {
        "manifest": str(args.manifest),
        "model": str(args.model),
        "failed": len(result.failures),
        "seconds": round(result.seconds, 2),
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
    return 1 if result.failures else 0


def _update_results(path: Path, name: str, entry: dict) -> None:
    """Add/replace one test set's entry in a results.json shared by a recipe's evaluations."""
    results = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    results[name] = entry
    atomic_write_text(path, json.dumps(results, indent=2, sort_keys=True) + "\n")


def cmd_prepare_fsdd(args: argparse.Namespace) -> int:
    from data_prep.fsdd import download_fsdd, prepare_fsdd

    source = Path(args.source) if args.source else download_fsdd(Path(args.download_dir))
    manifests = prepare_fsdd(source, Path(args.out_dir), split=args.split)
    for name, path in manifests.items():
        print(f"{name}: {path}")
    return 0


def cmd_prepare_synth(args: argparse.Namespace) -> int:
    from data_prep.synth import config_from_args, prepare_synth

    cfg = config_from_args(args)
    manifests = prepare_synth(Path(args.out_dir), cfg, jobs=args.jobs, force=args.force)
    for name, path in manifests.items():
        print(f"{name}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr", description="Speech recognition with recurrent networks and CTC."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a config file")
    p.add_argument("--config", help="YAML config (sections data, features, model, train, ...)")
    p.add_argument("--out-dir", required=True, help="experiment folder for checkpoints and logs")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    p.set_defaults(func=cmd_train)

    def add_model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", required=True, help="checkpoint (.pt) written by `asr train`")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
        p.add_argument(
            "--batch-seconds",
            type=float,
            default=200.0,
            help="padded audio seconds per batch (default 200)",
        )

    p = sub.add_parser("transcribe", help="print the transcript of audio files or folders")
    add_model_args(p)
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR")
    p.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="text: FILE<TAB>TEXT per line; json: one JSON object per line",
    )
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("evaluate", help="WER and CER of a model on a manifest")
    add_model_args(p)
    p.add_argument("--manifest", required=True, help="JSON-lines manifest with reference text")
    p.add_argument(
        "--out-dir",
        help="where errs-NAME.txt and summary-NAME.json go (default: the checkpoint's folder)",
    )
    p.add_argument("--name", help="test set name (default: the manifest's file name)")
    p.add_argument("--results", help="also add this test set's figures to this results.json")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("prepare", help="download a dataset and write its manifests")
    datasets = p.add_subparsers(dest="dataset", required=True)
    d = datasets.add_parser("fsdd", help="Free Spoken Digit Dataset v1.0.10")
    d.add_argument("--source", help="an unpacked copy (skips the download)")
    d.add_argument("--download-dir", default="data/fsdd", help="where to download and unpack")
    d.add_argument("--out-dir", required=True, help="where the manifests go")
    d.add_argument(
        "--split",
        default="standard",
        help="standard (takes 0-4 test) or speaker:NAME (NAME held out)",
    )
    d.set_defaults(func=cmd_prepare_fsdd)

    from data_prep.synth import add_synth_arguments

    d = datasets.add_parser("synth", help="a multi-voice corpus made by speech synthesisers")
    add_synth_arguments(d)
    d.set_defaults(func=cmd_prepare_synth)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
