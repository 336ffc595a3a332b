#!/usr/bin/env bash
# LJ Speech 1.1 (13,100 clips, 24 h, one speaker reading non-fiction, 22.05 kHz): prepare
# (fixed split of the sorted ids: one clip in 50 for dev, one for test, 262 each) -> train a
# BiGRU -> word 3-gram LM of the training text, decoder tuned on dev -> evaluate on dev and
# test (greedy; beam search + LM) -> transcribe two test clips.
#
#   bash recipes/ljspeech/run.sh --exp-dir exp/ljspeech [--source DIR] [--allow-partial]
#        [--stage N] [--stop-stage N] [-- section.key=value ...]
#
# Without --source: the copy in $ASR_DATA/LJSpeech-1.1 when there (ASR_DATA defaults to
# ../shared/data), else the official archive (2.6 GB, sha256-checked) downloaded into
# data/ljspeech. --allow-partial prepares a copy with fewer than the 13,100 clips. Figures:
# RESULTS.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
recipe_flag --allow-partial
parse_options "$@"
check_lm_prerequisites 2

if run_stage 0 "manifests (train, dev, test: the fixed split)"; then
  corpus_args ljspeech LJSpeech-1.1
  partial_args=()
  [ "$allow_partial" = 0 ] || partial_args=(--allow-partial)
  $asr prepare ljspeech "${corpus_args[@]}" "${partial_args[@]}" --out-dir "$data_dir"
fi

if run_stage 1 "train"; then
  train_or_resume "$recipe_dir/config.yaml" "$data_dir/train.jsonl" "$data_dir/dev.jsonl"
fi

if run_stage 2 "word 3-gram LM of the training text, decoder tuned on dev"; then
  lm_and_tune 3 "$data_dir/train.jsonl" "$data_dir/dev.jsonl"
fi

if run_stage 3 "evaluate the best checkpoint (greedy; beam search + LM)"; then
  evaluate_sets dev="$data_dir/dev.jsonl" test="$data_dir/test.jsonl"
  evaluate_sets test-lm="$data_dir/test.jsonl" -- --lm "$exp_dir/lm"
  print_results
fi

if run_stage 4 "transcribe two test clips (beam search + LM)"; then
  transcribe_examples 2 "$data_dir/test.jsonl" -- --lm "$exp_dir/lm"
fi
