#!/usr/bin/env bash
# TIMIT phone recognition (LDC93S1, licensed: a copy you hold, it cannot be downloaded):
# prepare the standard split (SA sentences dropped; 3696 training utterances of 462 speakers,
# the 50-speaker dev set of 400, the 192-utterance core test set) with phone text -> train a
# 5-layer BiLSTM with CTC on phones -> phone bigram LM of the training text, decoder tuned on
# dev -> evaluate: phone error rate (the WER of phone "words") on dev and the core test set,
# greedy and beam search + LM -> transcribe two test files.
#
#   bash recipes/timit/run.sh --exp-dir exp/timit --source DIR [--phones 39|48|61]
#        [--allow-partial] [--stage N] [--stop-stage N] [-- section.key=value ...]
#
# --source: the folder holding TRAIN/ and TEST/ (default: $ASR_DATA/timit when there, ASR_DATA
#   defaulting to ../shared/data). --phones: the units the model is trained on (default 39,
#   the scoring classes). With 48 or 61 the PER on the 39 classes is scored as well (dev-39,
#   test-39, test-lm-39: hypothesis and reference folded alike by score_folded.py here, run
#   with $PYTHON, default python3, which must import the toolkit). --allow-partial: prepare a
#   copy with fewer utterances than the full corpus (a sample). Figures are in RESULTS.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
recipe_option --phones 39
recipe_flag --allow-partial
parse_options "$@"
python=${PYTHON:-python3}
if [ "$phones" != 39 ] && stage_selected 3 && ! "$python" -c "import asr, data_prep" 2> /dev/null
then
  usage_error "stage 3 scores --phones $phones on the 39 classes with $python (PYTHON), which \
cannot import the toolkit: set PYTHON to the toolkit's python (make install: .venv/bin/python)"
fi
check_lm_prerequisites 2

if run_stage 0 "manifests of $phones phones (dev: 50 TEST speakers; test: the core test set)"; then
  if [ -z "$source_dir" ]; then
    [ -d "$ASR_DATA/timit" ] || usage_error "TIMIT is licensed (LDC93S1) and cannot be \
downloaded: give --source DIR, the folder holding TRAIN/ and TEST/"
    corpus_args timit timit
  else
    corpus_args=(--source "$source_dir")
  fi
  partial=()
  [ "$allow_partial" = 0 ] || partial=(--allow-partial)
  $asr prepare timit "${corpus_args[@]}" --out-dir "$data_dir" --phones "$phones" "${partial[@]}"
fi

if run_stage 1 "train on phones"; then
  train_or_resume "$recipe_dir/config.yaml" "$data_dir/train.jsonl" "$data_dir/dev.jsonl"
fi

if run_stage 2 "phone bigram LM of the training text, decoder tuned on dev"; then
  lm_and_tune 2 "$data_dir/train.jsonl" "$data_dir/dev.jsonl"
fi

if run_stage 3 "evaluate the best checkpoint: PER, greedy and beam search + LM"; then
  evaluate_sets dev="$data_dir/dev.jsonl" test="$data_dir/test.jsonl"
  evaluate_sets test-lm="$data_dir/test.jsonl" -- --lm "$exp_dir/lm"
  if [ "$phones" != 39 ]; then  # the model's phones folded to the 39 scoring classes
    folded=("$python" "$recipe_dir/score_folded.py" --model "$exp_dir/best.pt" \
      --out-dir "$exp_dir" --results "$exp_dir/results.json")
    "${folded[@]}" --manifest "$data_dir/dev.jsonl" --name dev-39
    "${folded[@]}" --manifest "$data_dir/test.jsonl" --name test-39
    "${folded[@]}" --manifest "$data_dir/test.jsonl" --name test-lm-39 --lm "$exp_dir/lm"
  fi
  print_results
fi

if run_stage 4 "transcribe two test files (phones)"; then
  transcribe_examples 2 "$data_dir/test.jsonl"
fi
