#!/usr/bin/env bash
# CMU AN4 (948 training + 130 test utterances, 16 kHz, 84 speakers, 101 words: spelt names,
# numbers, dates, commands): prepare (dev = 7 whole training speakers) -> train a BiGRU within a
# 30-minute budget -> word n-gram LMs, decoder tuned on dev -> evaluate on the official test set
# (greedy; beam search + LM of the training text; + the corpus dictionary's words; + the CMU
# Pronouncing Dictionary's words spelt out) -> transcribe two test files.
#
#   bash recipes/an4/run.sh --exp-dir exp/an4 [--source DIR] [--stage N] [--stop-stage N]
#        [--config FILE] [-- section.key=value ...]
#
# Without --source: the copy in $ASR_DATA/an4 when there (ASR_DATA defaults to ../shared/data),
# else an4_sphere.tar.gz downloaded from CMU into data/an4. `-- model.rnn_type=lstm
# train.seed=1` and the like change the model or seed; figures are in RESULTS.md. The spelt-word
# LM needs pocketsphinx's copy of the CMU Pronouncing Dictionary (`pip install -e ".[spell]"`;
# `make install` has it). `--config recipes/an4/config-streaming.yaml` trains the left-to-right
# model that streams (docs/streaming.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
recipe_option --config "$recipe_dir/config.yaml"
parse_options "$@"

# lm-spell needs the CMU Pronouncing Dictionary of pocketsphinx (pip install -e ".[spell]").
check_lm_prerequisites 2 cmudict

if run_stage 0 "manifests (train, dev = 7 held-out training speakers, test) and words.txt"; then
  corpus_args an4 an4
  $asr prepare an4 "${corpus_args[@]}" --out-dir "$data_dir"
fi

if run_stage 1 "train"; then
  train_or_resume "$config" "$data_dir/train.jsonl" "$data_dir/dev.jsonl"
fi

if run_stage 2 "word LMs (training text; + the dictionary's words; + spelt words), tuned on dev"; then
  lm_and_tune 3 "$data_dir/train.jsonl" "$data_dir/dev.jsonl"
  # November and thirteen occur in the test set but not in the training text: this LM also
  # holds the 101 words of etc/an4.dic (one a line), so its lexicon can output them.
  $asr lm build --text "$data_dir/train.jsonl" "$data_dir/words.txt" --order 3 \
    --out "$exp_dir/lm-dict"
  $asr tune-decoder --model "$exp_dir/best.pt" --manifest "$data_dir/dev.jsonl" \
    --lm "$exp_dir/lm-dict"
  # Four test utterances of 13 are names, streets and towns spelt letter by letter: this
  # 5-gram also holds the 117k words of the CMU Pronouncing Dictionary (pocketsphinx's copy)
  # spelt out, one a sentence, with the transcripts counted 100 times (RESULTS.md).
  $asr lm build --text "$data_dir/train.jsonl" "$data_dir/words.txt" --order 5 \
    --spell cmudict --text-copies 100 --out "$exp_dir/lm-spell"
  $asr tune-decoder --model "$exp_dir/best.pt" --manifest "$data_dir/dev.jsonl" \
    --lm "$exp_dir/lm-spell"
fi

if run_stage 3 "evaluate the best checkpoint: greedy, beam search + each LM"; then
  evaluate_sets dev="$data_dir/dev.jsonl" test="$data_dir/test.jsonl"
  evaluate_sets test-lm="$data_dir/test.jsonl" -- --lm "$exp_dir/lm"
  evaluate_sets test-lm-dict="$data_dir/test.jsonl" -- --lm "$exp_dir/lm-dict"
  evaluate_sets test-lm-spell="$data_dir/test.jsonl" -- --lm "$exp_dir/lm-spell"
  print_results
fi

if run_stage 4 "transcribe two test files"; then
  transcribe_examples 2 "$data_dir/test.jsonl"
fi
