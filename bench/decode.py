"""Benchmark: CTC decoding speed and WER, our beam search against pyctcdecode, same log-probs.

    bash bench/setup_pyctcdecode.sh   # once: the peer's own venv (it pins numpy<2)
    .venv/bin/python bench/decode.py --model exp/synth/best.pt \
        --manifest exp/synth/data/test.jsonl --lm exp/synth/lm --out exp/synth/bench-decode.json

The model runs once over the manifest (not timed); every decoder then works on the same CPU
log-probabilities, single-threaded, each warmed up on a few utterances first:
1. greedy (asr.decoding.greedy, batched);
2. ours, no LM: asr.decoding.beam.BeamSearchDecoder (flashlight-text), lexicon-constrained,
   per beam;
3. ours + LM: the same with the LM folder's word n-gram, per beam;
4. pyctcdecode 0.5.0 without and with the same KenLM model and the lexicon's words as
   unigrams, per beam, in its own venv (bench/pyctcdecode_peer.py, one process, no pool).
Per method: decoding milliseconds per utterance (decoder construction and LM loading are
timed apart) and WER. LM weight and word bonus: the values `asr tune-decoder` stored in the
checkpoint for this LM, else BeamConfig's defaults (said so), unless given; pyctcdecode gets
the same weights converted (alpha = lm_weight / ln 10, beta = word_score: see the peer's
docstring). The no-LM rows of both use no word bonus. Prints a Markdown table and the speed
ratios; --out writes everything (hypotheses included) as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from asr.checkpoint import load_checkpoint
from asr.data import Utterance, read_manifest
from asr.decoding.beam import BeamConfig, BeamSearchDecoder, read_word_list
from asr.decoding.choose import make_decoder, resolve_lm, tuned_settings
from asr.metrics import score_corpus, score_utterance
from asr.text import normalize_text
from asr.transcribe import Transcriber

HERE = Path(__file__).resolve().parent
PEER_SCRIPT = HERE / "pyctcdecode_peer.py"
DEFAULT_PEER_PYTHON = HERE / ".venv-pyctcdecode" / "bin" / "python"
SETUP = "bench/setup_pyctcdecode.sh"  # creates it
WARMUP = 3  # utterances decoded before timing starts (the peer uses the same number)
Batch = tuple[list[str], torch.Tensor, torch.Tensor]  # keys, log-probs (B, T, V), lengths (B,)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint (.pt)")
    parser.add_argument("--manifest", required=True, help="test manifest (JSON lines with text)")
    parser.add_argument("--lm", required=True, help="word LM folder from `asr lm build`, or file")
    parser.add_argument("--lexicon", help="word list (default: the LM folder's lexicon.txt)")
    parser.add_argument("--limit", type=int, help="only the manifest's first N utterances")
    parser.add_argument("--beams", default="16,64", help="comma-separated beam sizes")
    parser.add_argument("--lm-weight", type=float, help="default: tuned in the checkpoint")
    parser.add_argument("--word-score", type=float, help="default: tuned in the checkpoint")
    parser.add_argument("--peer-python", default=str(DEFAULT_PEER_PYTHON), help="%(default)s")
    parser.add_argument("--device", default="auto", help="for the model only (default: auto)")
    parser.add_argument("--out", help="JSON results")
    return parser.parse_args()


def model_log_probs(
    transcriber: Transcriber, utts: list[Utterance]
) -> tuple[list[Batch], list[str]]:
    """The model's log-probs for all utterances, in batches named by utterance key; and one
    line per unreadable utterance."""
    batches, failures = [], []
    for batch in transcriber.log_prob_batches(utts):
        failures += [error.message for error in batch.errors]
        if batch.names:
            batches.append((batch.names, batch.log_probs, batch.lengths))
    return batches, failures


def time_ours(
    transcriber: Transcriber, decoder: BeamSearchDecoder | None, batches: list[Batch]
) -> tuple[dict[str, str], float]:
    """Hypotheses by path and the decoding seconds over all batches (greedy if decoder=None)."""
    transcriber.decoder = decoder
    _, log_probs, lengths = batches[0]
    transcriber.decode_log_probs(log_probs[:WARMUP], lengths[:WARMUP])
    hyps = {}
    start = time.perf_counter()
    for paths, log_probs, lengths in batches:
        recs = transcriber.decode_log_probs(log_probs, lengths)
        hyps.update(zip(paths, (r.text for r in recs), strict=True))
    seconds = time.perf_counter() - start
    transcriber.decoder = None
    return hyps, seconds


def wer_of(hyps: dict[str, str], refs: dict[str, str]) -> float:
    scores = [score_utterance(p, refs[p], normalize_text(h)) for p, h in hyps.items()]
    return score_corpus(scores).wer


def write_npz(path: Path, batches: list[Batch], tokens: list[str], words: list[str]) -> list[str]:
    """The peer's input: per-utterance log-probs (T_i, V), tokens, words; returns the paths in
    the order of `lp_<i>`."""
    arrays, order = {}, []
    for paths, log_probs, lengths in batches:
        for b, p in enumerate(paths):
            arrays[f"lp_{len(order)}"] = log_probs[b, : int(lengths[b])].numpy()
            order.append(p)
    lengths = np.array([len(arrays[f"lp_{i}"]) for i in range(len(order))])
    np.savez(path, tokens=np.array(tokens), words=np.array(words), lengths=lengths, **arrays)
    return order


def run_peer(
    peer_python: str,
    batches: list[Batch],
    tokens: list[str],
    words: list[str],
    lm: Path,
    alpha: float,
    beta: float,
    beams: list[int],
) -> tuple[dict | None, list[str] | None, str | None]:
    """pyctcdecode's results, the utterance order, or why there are none."""
    if not Path(peer_python).is_file():
        why = f"no pyctcdecode venv ({peer_python}): create it with `bash {SETUP}`"
        return None, None, why
    # numpy's BLAS would start threads of its own; both sides decode on one thread.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env["MKL_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        npz, out = Path(tmp) / "log_probs.npz", Path(tmp) / "peer.json"
        order = write_npz(npz, batches, tokens, words)
        cmd = [peer_python, str(PEER_SCRIPT), "--log-probs", str(npz), "--lm", str(lm)]
        cmd += ["--alpha", repr(alpha), "--beta", repr(beta), "--beams", ",".join(map(str, beams))]
        cmd += ["--out", str(out)]
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL)  # stderr: progress
        if proc.returncode != 0:
            return None, None, f"the pyctcdecode peer failed (exit {proc.returncode}; see above)"
        return json.loads(out.read_text(encoding="utf-8")), order, None


def make_row(
    method: str,
    beam: int | None,
    hyps: dict[str, str],
    seconds: float,
    build_s: float,
    refs: dict[str, str],
) -> dict:
    return {
        "method": method,
        "beam": beam,
        "ms_per_utt": 1000 * seconds / len(hyps),
        "wer": wer_of(hyps, refs),
        "build_s": build_s,  # decoder construction (LM loading), not in ms_per_utt
        "hypotheses": hyps,
    }


def our_rows(
    transcriber: Transcriber,
    batches: list[Batch],
    refs: dict[str, str],
    words: list[str],
    lm_decoder: Callable[[int], BeamSearchDecoder],
    beams: list[int],
) -> list[dict]:
    """Greedy, then our beam search without and with the LM; `lm_decoder(beam)` builds the
    latter."""
    hyps, seconds = time_ours(transcriber, None, batches)
    rows = [make_row("greedy", None, hyps, seconds, 0.0, refs)]
    for method in ("ours, no LM", "ours + LM"):
        for beam in beams:
            start = time.perf_counter()
            if method == "ours + LM":
                decoder = lm_decoder(beam)
            else:
                cfg = BeamConfig(beam_size=beam)  # no word bonus, as pyctcdecode without an LM
                decoder = BeamSearchDecoder(transcriber.tokenizer, cfg, words=words)
            build_s = time.perf_counter() - start
            hyps, seconds = time_ours(transcriber, decoder, batches)
            rows.append(make_row(method, beam, hyps, seconds, build_s, refs))
    return rows


def peer_rows(
    peer: dict | None,
    order: list[str] | None,
    skipped: str | None,
    beams: list[int],
    refs: dict[str, str],
) -> list[dict]:
    rows = []
    for method in ("pyctcdecode, no LM", "pyctcdecode + LM"):
        for beam in beams:
            if peer is None or order is None:
                rows.append({"method": method, "beam": beam, "skipped": skipped})
                continue
            use_lm = method == "pyctcdecode + LM"
            run = next(r for r in peer["runs"] if r["lm"] == use_lm and r["beam"] == beam)
            hyps = dict(zip(order, run["hypotheses"], strict=True))
            rows.append(make_row(method, beam, hyps, run["decode_s"], run["build_s"], refs))
    return rows


def speed_ratios(rows: list[dict], beams: list[int]) -> list[dict]:
    """pyctcdecode's ms/utt over ours, with and without the LM, at each beam."""
    by_key = {(r["method"], r["beam"]): r for r in rows}
    ratios = []
    for beam in beams:
        for lm, ours, theirs in (
            (True, "ours + LM", "pyctcdecode + LM"),
            (False, "ours, no LM", "pyctcdecode, no LM"),
        ):
            a, b = by_key[ours, beam], by_key[theirs, beam]
            if "skipped" in b:
                continue
            ratios.append(
                {
                    "beam": beam,
                    "lm": lm,
                    "speedup": b["ms_per_utt"] / a["ms_per_utt"],
                    "wer_ours": a["wer"],
                    "wer_pyctcdecode": b["wer"],
                    # with an LM: the aim is >= 10x faster at equal or lower WER
                    "target_met": (
                        b["ms_per_utt"] >= 10 * a["ms_per_utt"] and a["wer"] <= b["wer"]
                        if lm
                        else None
                    ),
                }
            )
    return ratios


def print_report(info: dict, rows: list[dict], ratios: list[dict]) -> None:
    w = info["weights"]
    print(
        f"\n{info['utterances']} utterances ({info['audio_seconds']} s of audio, "
        f"{info['frames_per_utt']} frames each on average), {info['lexicon_words']}-word "
        f"lexicon, {info['lm']}; {w['source']} (pyctcdecode: alpha {w['pyctcdecode_alpha']:.4g}, "
        f"beta {w['pyctcdecode_beta']:g}); one thread each\n"
    )
    print("| method | beam | ms/utt | WER | decoder build (s) |\n|---|---|---|---|---|")
    for r in rows:
        beam = "-" if r["beam"] is None else r["beam"]
        if "skipped" in r:
            print(f"| {r['method']} | {beam} | skipped | skipped | see below |")
        else:
            print(
                f"| {r['method']} | {beam} | {r['ms_per_utt']:.2f} | {100 * r['wer']:.1f}% "
                f"| {r['build_s']:.3f} |"
            )
    if info["peer_skipped"]:
        print(f"\npyctcdecode rows skipped: {info['peer_skipped']}")
    print()
    for r in ratios:
        line = (
            f"beam {r['beam']}, {'with' if r['lm'] else 'without'} LM: ours "
            f"{r['speedup']:.1f}x faster than pyctcdecode, WER {100 * r['wer_ours']:.1f}% vs "
            f"{100 * r['wer_pyctcdecode']:.1f}%"
        )
        if r["lm"]:
            line += (
                f" (target >= 10x at equal or lower WER: {'met' if r['target_met'] else 'NOT met'})"
            )
        print(line)


def weight_note(given: float | None, tuned: bool, value: float) -> str:
    if given is not None:
        return f"{value:g} (given)"
    return f"{value:g} (tuned by `asr tune-decoder`)" if tuned else f"{value:g} (default)"


def main() -> None:
    args = parse_args()
    beams = [int(b) for b in args.beams.split(",")]
    state = load_checkpoint(args.model)
    transcriber = Transcriber.from_state(state, args.device)
    tokenizer = transcriber.tokenizer
    choice = resolve_lm(args.lm, args.lexicon)
    if choice.lexicon is None:
        sys.exit(f"{args.lm}: no lexicon: this benchmark compares word-LM decoding (--lexicon)")
    utts = read_manifest(args.manifest)[: args.limit]
    refs = {u.key: normalize_text(u.text) for u in utts}
    durations = {u.key: u.duration for u in utts}

    batches, failures = model_log_probs(transcriber, utts)
    for line in failures:
        print(f"unreadable, left out: {line}", file=sys.stderr)
    if not batches:
        sys.exit(f"{args.manifest}: no utterance could be read")
    used = [p for paths, _, _ in batches for p in paths]
    torch.set_num_threads(1)  # decoding: one thread, as flashlight and pyctcdecode use

    # The LM decoder as `asr transcribe --lm` makes it: tuned values unless given.
    tuned = tuned_settings(state)
    lm_decoder, notes = make_decoder(
        tokenizer, choice, tuned, lm_weight=args.lm_weight, word_score=args.word_score
    )
    assert lm_decoder is not None
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    lm_weight, word_score = lm_decoder.cfg.lm_weight, lm_decoder.cfg.word_score

    def build_lm_decoder(beam: int) -> BeamSearchDecoder:
        decoder, _ = make_decoder(tokenizer, choice, [], beam, lm_weight, word_score)
        assert decoder is not None
        return decoder

    words = read_word_list(choice.lexicon)
    rows = our_rows(transcriber, batches, refs, words, build_lm_decoder, beams)

    is_tuned = any(t.get("lm_sha256") == choice.lm_sha256 for t in tuned)
    weights = {
        "lm_weight": lm_weight,
        "word_score": word_score,
        "source": (
            f"lm_weight {weight_note(args.lm_weight, is_tuned, lm_weight)}, "
            f"word_score {weight_note(args.word_score, is_tuned, word_score)}"
        ),
        "pyctcdecode_alpha": lm_weight / math.log(10),  # flashlight weighs log10 LM scores
        "pyctcdecode_beta": word_score,  # both add it once per word
    }
    # pyctcdecode's unigrams: the words our decoder kept (it drops words the model cannot spell)
    kept = [w for w in words if w not in set(lm_decoder.dropped_words)]
    alpha, beta = weights["pyctcdecode_alpha"], weights["pyctcdecode_beta"]
    peer, order, skipped = run_peer(
        args.peer_python, batches, tokenizer.tokens, kept, choice.lm, alpha, beta, beams
    )
    if skipped:
        print(f"pyctcdecode rows skipped: {skipped}", file=sys.stderr)
    rows += peer_rows(peer, order, skipped, beams, refs)
    ratios = speed_ratios(rows, beams)

    frames = sum(int(n) for _, _, lengths in batches for n in lengths)
    peer_pruning = {k: peer[k] for k in ("beam_prune_logp", "token_min_logp")} if peer else None
    info = {
        "command": " ".join(sys.argv),
        "model": args.model,
        "manifest": args.manifest,
        "lm": str(choice.lm),
        "lexicon": str(choice.lexicon),
        "lexicon_words": len(kept),
        "utterances": len(used),
        "unreadable": failures,
        "audio_seconds": round(sum(durations[p] for p in used), 2),
        "frames_per_utt": round(frames / len(used), 1),
        "weights": weights,
        "warmup_utterances": WARMUP,
        "our_beam_threshold": BeamConfig.beam_threshold,
        "versions": {p: version(p) for p in ("torch", "torchaudio", "flashlight-text")},
        "peer_versions": peer["versions"] if peer else None,
        "peer_pruning": peer_pruning,
        "peer_skipped": skipped,
        "cpu_count": os.cpu_count(),
    }
    print_report(info, rows, ratios)
    if args.out:
        text = json.dumps({**info, "rows": rows, "ratios": ratios}, indent=2) + "\n"
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
