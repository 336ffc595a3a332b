#!/usr/bin/env bash
# Mozilla Common Voice, any language (a release downloaded by hand: cv-corpus-*/<lang>/ with
# train/dev/test/validated.tsv and clips/*.mp3): prepare (the release's own train/dev/test;
# text lower-cased with the language's rules) -> train a BiGRU -> word 3-gram LM of the
# training text, decoder tuned on dev -> evaluate on dev and test (greedy; beam search + LM)
# -> transcribe two test clips.
#
#   bash recipes/commonvoice/run.sh --exp-dir exp/commonvoice-tr --source DIR
#        [--language LOCALE] [--train-set train|validated] [--stage N] [--stop-stage N]
#        [-- section.key=value ...]
#
# --source (required: Common Voice cannot be downloaded here) is the language folder
# cv-corpus-*/<lang>/, whose name gives the language, or cv-corpus-*/ with --language.
# --train-set validated trains on validated.tsv less the dev and test speakers (more data).
# Get a release from https://commonvoice.mozilla.org/datasets. Figures: RESULTS.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
recipe_option --language ""
recipe_option --train-set train
parse_options "$@"
check_lm_prerequisites 2

if run_stage 0 "manifests (train: $train_set; dev; test)"; then
  [ -n "$source_dir" ] || usage_error "--source is required: the Common Voice language folder \
cv-corpus-*/<lang>/, downloaded by hand from https://commonvoice.mozilla.org/datasets"
  language_args=()
  [ -z "$language" ] || language_args=(--language "$language")
  $asr prepare commonvoice --source "$source_dir" "${language_args[@]}" \
    --train-set "$train_set" --out-dir "$data_dir"
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
