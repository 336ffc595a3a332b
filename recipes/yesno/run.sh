#!/usr/bin/env bash
# Kaldi's yesno corpus (OpenSLR 1: 60 files of eight "yes"/"no" words, one speaker, 8 kHz):
# prepare (lhotse's split: 30 train, 30 test; dev = the training set) -> train a tiny BiGRU ->
# word bigram LM of the training text, decoder tuned on dev -> evaluate (greedy; lexicon of
# the two words; lexicon + LM) -> transcribe two test files (lexicon + LM). Every stage in
# about a minute on a 2-core CPU: the CI smoke test of the recipe machinery. One test file is
# mislabelled (data_prep/yesno.py), so 1 error in 240 words (0.42%) is the floor.
#
#   bash recipes/yesno/run.sh --exp-dir exp/yesno [--source DIR] [--stage N] [--stop-stage N]
#        [-- section.key=value ...]
#
# Without --source: the copy in $ASR_DATA/yesno/waves_yesno when there (ASR_DATA defaults to
# ../shared/data), else the archive downloaded into data/yesno.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
parse_options "$@"
check_lm_prerequisites 2

if run_stage 0 "manifests"; then
  corpus_args yesno yesno/waves_yesno
  $asr prepare yesno "${corpus_args[@]}" --out-dir "$data_dir"
fi

if run_stage 1 "train"; then
  train_or_resume "$recipe_dir/config.yaml" "$data_dir/train.jsonl" "$data_dir/dev.jsonl"
fi

if run_stage 2 "word bigram LM of the training text; decoder tuned on dev (the training set)"; then
  lm_and_tune 2 "$data_dir/train.jsonl" "$data_dir/dev.jsonl"
fi

if run_stage 3 "evaluate the best checkpoint (greedy; lexicon only; lexicon + LM)"; then
  evaluate_sets test="$data_dir/test.jsonl"
  evaluate_sets test-lexicon="$data_dir/test.jsonl" -- --lexicon "$exp_dir/lm/lexicon.txt"
  evaluate_sets test-lm="$data_dir/test.jsonl" -- --lm "$exp_dir/lm"
  print_results
fi

if run_stage 4 "transcribe two test files (beam search with the LM)"; then
  transcribe_examples 2 "$data_dir/test.jsonl" -- --lm "$exp_dir/lm"
fi
