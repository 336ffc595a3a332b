"""PER on the 39 scoring classes of a model trained on TIMIT's 61 or 48 phones.

The model transcribes the manifest as `asr evaluate` does (greedy, or beam search with --lm
and the values `asr tune-decoder` stored for it); then hypothesis and reference are both folded
to the 39 classes with `data_prep.timit.fold_phones` (Kaldi's conf/phones.60-48-39.map, q
removed, nothing merged) and scored with the toolkit's metrics. Writes errs-NAME.txt and
summary-NAME.json in --out-dir and adds NAME to --results, as `asr evaluate` does.

    python recipes/timit/score_folded.py --model exp/timit/best.pt \
        --manifest exp/timit/data/test.jsonl --name test-39 --out-dir exp/timit \
        --results exp/timit/results.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from asr.data import read_manifest
from asr.evaluate import evaluate_utterances
from asr.files import atomic_write_text
from asr.metrics import UtteranceScore, score_corpus, score_utterance, write_report
from asr.transcribe import Transcriber
from data_prep.timit import fold_phones


def fold_scores(scores: list[UtteranceScore], phones: int = 39) -> list[UtteranceScore]:
    """The utterances rescored with reference and hypothesis folded to `phones` phones."""
    return [
        score_utterance(s.audio_filepath, fold_phones(s.reference, phones),
                        fold_phones(s.hypothesis, phones))
        for s in scores
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint (best.pt)")
    parser.add_argument("--manifest", required=True, help="manifest of 61- or 48-phone text")
    parser.add_argument("--name", required=True, help="test set name in the reports")
    parser.add_argument("--out-dir", required=True, help="where errs-NAME.txt goes")
    parser.add_argument("--results", help="also add the figures to this results.json")
    parser.add_argument("--lm", help="beam search with this LM folder (as tuned)")
    args = parser.parse_args(argv)

    transcriber = Transcriber.from_checkpoint(args.model, lm=args.lm)
    result = evaluate_utterances(transcriber, read_manifest(args.manifest))
    scores = fold_scores(result.utterances)
    score = score_corpus(scores)
    extra = {"manifest": args.manifest, "model": args.model, "folded_to": 39, "lm": args.lm}
    write_report(Path(args.out_dir), args.name, scores, score, extra)
    print(f"{args.name}: PER {100 * score.wer:.2f}% on the 39 classes ({score.utterances} utts)")
    if args.results:
        path = Path(args.results)
        results = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        entry = {"wer": score.wer, "cer": score.cer, "utterances": score.utterances}
        results[args.name] = {**entry, "failed": len(result.failures), "folded_to": 39}
        atomic_write_text(path, json.dumps(results, indent=2, sort_keys=True) + "\n")
    for line in result.failures:
        print(f"score_folded.py: skipped {line}", file=sys.stderr)
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
