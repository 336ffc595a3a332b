"""The comparison peer of bench/decode.py: pyctcdecode 0.5.0 on the same log-probabilities.

Runs inside its own venv (`bash bench/setup_pyctcdecode.sh`), so it imports only numpy,
pyctcdecode and kenlm. bench/decode.py calls it as

    bench/.venv-pyctcdecode/bin/python bench/pyctcdecode_peer.py --log-probs LP.npz \
        --lm lm.bin --alpha A --beta B --beams 16,64 --out peer.json

LP.npz holds `tokens` (the model's token list, blank first), `words` (the lexicon: pyctcdecode's
unigrams), `lengths` and `lp_<i>` = utterance i's log-probs (T_i, V). For each beam width it
decodes every utterance without an LM and, with --lm, with the KenLM model, in this one process
(no multiprocessing pool), and writes JSON: per run the hypotheses, the decoder construction
time and the decoding time per utterance (decoding only: a warm-up on the first utterances
comes first and is not counted).

Weights. Flashlight (our decoder) adds lm_weight x the KenLM score in log10 and word_score once
per word. pyctcdecode 0.5.0, pyctcdecode/language_model.py, LanguageModel.score, line 325:
    lm_score = self.alpha * lm_score * LOG_BASE_CHANGE_FACTOR + self.beta
with LOG_BASE_CHANGE_FACTOR = 1 / log10(e) = ln 10 (pyctcdecode/constants.py, line 18) and
lm_score the KenLM log10 score of the word (plus `</s>` after the last word, as flashlight's
LexiconDecoder::decodeEnd adds). `score` is called once per completed word (decoder.py,
_get_lm_beams, line 356: at the space after a word, and for the last word at the end), so
beta is a per-word bonus in the same natural-log units as flashlight's word_score
(LexiconDecoder.cpp: `score + opt_.lmWeight * lmScore + opt_.wordScore` when a word is
emitted). Hence alpha = lm_weight / ln 10 and beta = word_score; bench/decode.py converts.
Without an LM pyctcdecode applies neither (the LanguageModel is None), so its no-LM rows are a
plain character beam search.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib.metadata import version

import numpy as np
from pyctcdecode import build_ctcdecoder
from pyctcdecode.constants import DEFAULT_MIN_TOKEN_LOGP, DEFAULT_PRUNE_LOGP

WARMUP = 3  # utterances decoded before timing starts


def labels_of(tokens: list[str]) -> list[str]:
    """Our token names -> pyctcdecode's labels: "" for the CTC blank (id 0), " " for the space."""
    return ["", *tokens[1:]]


def decode_all(decoder, log_probs: list[np.ndarray], beam: int) -> tuple[list[str], float]:
    """Hypotheses and the decoding seconds for all utterances, after a warm-up."""
    for lp in log_probs[:WARMUP]:
        decoder.decode(lp, beam_width=beam)
    start = time.perf_counter()
    texts = [decoder.decode(lp, beam_width=beam) for lp in log_probs]
    return texts, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-probs", required=True, help=".npz written by bench/decode.py")
    parser.add_argument("--lm", help="KenLM model (binary or ARPA); without it only no-LM runs")
    parser.add_argument("--alpha", type=float, default=0.5, help="LM weight (natural-log scale)")
    parser.add_argument("--beta", type=float, default=0.0, help="bonus per word")
    parser.add_argument("--beams", default="16,64", help="comma-separated beam widths")
    parser.add_argument("--out", required=True, help="JSON results")
    args = parser.parse_args()

    data = np.load(args.log_probs)
    tokens = [str(t) for t in data["tokens"]]
    words = [str(w) for w in data["words"]]
    log_probs = [
        np.ascontiguousarray(data[f"lp_{i}"], dtype=np.float32) for i in range(len(data["lengths"]))
    ]
    labels = labels_of(tokens)
    beams = [int(b) for b in args.beams.split(",")]

    runs = []
    for use_lm in [False, True] if args.lm else [False]:
        start = time.perf_counter()
        if use_lm:
            decoder = build_ctcdecoder(
                labels, kenlm_model_path=args.lm, unigrams=words, alpha=args.alpha, beta=args.beta
            )
        else:
            decoder = build_ctcdecoder(labels)
        build_s = time.perf_counter() - start
        for beam in beams:
            texts, seconds = decode_all(decoder, log_probs, beam)
            runs.append(
                {
                    "lm": use_lm,
                    "beam": beam,
                    "build_s": build_s,
                    "decode_s": seconds,
                    "ms_per_utt": 1000 * seconds / len(log_probs),
                    "hypotheses": texts,
                }
            )
            print(
                f"pyctcdecode {'with' if use_lm else 'without'} LM, beam {beam}: "
                f"{1000 * seconds / len(log_probs):.2f} ms/utt",
                file=sys.stderr,
            )
    out = {
        "versions": {p: version(p) for p in ("pyctcdecode", "numpy", "kenlm")},
        "alpha": args.alpha,
        "beta": args.beta,
        # pyctcdecode's own pruning, left at its defaults as ours is at BeamConfig's
        "beam_prune_logp": DEFAULT_PRUNE_LOGP,
        "token_min_logp": DEFAULT_MIN_TOKEN_LOGP,
        "utterances": len(log_probs),
        "runs": runs,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
