#!/usr/bin/env bash
# Free Spoken Digit Dataset recipe: prepare -> train -> LM of the training text and decoder
# tuning on dev -> evaluate (greedy, lexicon of the ten digit words, lexicon + LM) ->
# transcribe examples.
#
#   bash recipes/fsdd/run.sh --exp-dir exp/fsdd [--source DIR] [--split standard|speaker:NAME]
#        [--stage N] [--stop-stage N] [-- section.key=value ...]
#
# Without --source: the copy in $ASR_DATA/free-spoken-digit-dataset-1.0.10 when there
# (ASR_DATA defaults to ../shared/data), else the v1.0.10 release downloaded into data/fsdd.
# Every stage can be rerun alone; training continues from EXP_DIR/last.pt when it exists.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
recipe_option --split standard
parse_options "$@"
check_lm_prerequisites 2

if run_stage 0 "manifests ($split split)"; then
  corpus_args fsdd free-spoken-digit-dataset-1.0.10
  $asr prepare fsdd "${corpus_args[@]}" --out-dir "$data_dir" --split "$split"
fi

if run_stage 1 "train"; then
  train_or_resume "$recipe_dir/config.yaml" "$data_dir/train.jsonl" "$data_dir/dev.jsonl"
fi

if run_stage 2 "word bigram LM of the training text (its lexicon: the ten digit words)"; then
  lm_and_tune 2 "$data_dir/train.jsonl" "$data_dir/dev.jsonl"
fi

if run_stage 3 "evaluate the best checkpoint (greedy; lexicon only; lexicon + LM)"; then
  evaluate_sets dev="$data_dir/dev.jsonl" test="$data_dir/test.jsonl"
  evaluate_sets test-lexicon="$data_dir/test.jsonl" -- --lexicon "$exp_dir/lm/lexicon.txt"
  evaluate_sets test-lm="$data_dir/test.jsonl" -- --lm "$exp_dir/lm"
  echo "results: $exp_dir/results.json"
fi

if run_stage 4 "transcribe two test files"; then
  transcribe_examples 2 "$data_dir/test.jsonl"
fi
