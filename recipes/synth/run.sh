#!/usr/bin/env bash
# Synthetic speech recipe, no download needed: synthesise connected digits with every offline
# voice -> train -> n-gram LM on the training text, decoder tuned on the dev voices -> evaluate
# (greedy and beam search + LM) on voices never heard in training and on real human digits
# (FSDD) -> transcribe two examples with word times -> summary.
#
#   bash recipes/synth/run.sh --exp-dir exp/synth [--fsdd DIR] [--num-train N] [--num-eval N]
#        [--mix-fsdd] [--stage N] [--stop-stage N] [-- section.key=value ...]
#
# --fsdd DIR: an unpacked FSDD copy for the real-speech test (default: the copy in
#   $ASR_DATA/free-spoken-digit-dataset-1.0.10 when there, ASR_DATA defaulting to
#   ../shared/data, else a download into data/fsdd; the FSDD test is skipped when neither works).
# --mix-fsdd: train on FSDD's standard training takes (10-49 of every speaker) as well.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
recipe_option --fsdd ""
recipe_option --num-train 3000
recipe_option --num-eval 300
recipe_flag --mix-fsdd
parse_options "$@"
[ -z "$source_dir" ] || usage_error "--source: this recipe makes its corpus (--fsdd DIR: FSDD)"
fsdd_dir=$exp_dir/fsdd
check_lm_prerequisites 2

if run_stage 0 "synthesise connected digits; dev and test voices are never trained on"; then
  $asr prepare synth --out-dir "$data_dir" --num-train "$num_train" --num-dev "$num_eval" \
    --num-test "$num_eval" --band-limit
  echo "== stage 0: real human digits (FSDD)"
  corpus_args fsdd free-spoken-digit-dataset-1.0.10 "$fsdd"
  $asr prepare fsdd "${corpus_args[@]}" --out-dir "$fsdd_dir" || {
    [ "${corpus_args[0]}" = --download-dir ] || exit 1  # a given copy must work
    echo "FSDD is neither in $ASR_DATA nor downloadable: its test is skipped"
  }
fi

if run_stage 1 "train"; then
  train=$data_dir/train.jsonl
  if [ "$mix_fsdd" = 1 ]; then
    [ -f "$fsdd_dir/train.jsonl" ] || { echo "run.sh: --mix-fsdd needs FSDD" >&2; exit 1; }
    train=$train,$fsdd_dir/train.jsonl
  fi
  train_or_resume "$recipe_dir/config.yaml" "$train" "$data_dir/dev.jsonl"
fi

if run_stage 2 "3-gram word LM of the training text; LM weight and word bonus tuned on dev"; then
  lm_and_tune 3 "$data_dir/train.jsonl" "$data_dir/dev.jsonl"
fi

sets=("synth-test=$data_dir/test.jsonl")  # NAME=MANIFEST, FSDD's when prepared
[ ! -f "$fsdd_dir/test.jsonl" ] || sets+=("fsdd-test=$fsdd_dir/test.jsonl")

if run_stage 3 "evaluate the best checkpoint: greedy, then beam search with the LM"; then
  [ ${#sets[@]} = 2 ] || echo "no FSDD manifests: real human speech not evaluated"
  evaluate_sets "${sets[@]}"
  evaluate_sets "${sets[@]/=/-lm=}" -- --lm "$exp_dir/lm"
fi

if run_stage 4 "transcribe two files (an unseen synthetic voice, a real human if present)"; then
  for format in text json srt; do
    out=(); [ $format = text ] || out=(--format $format --out-dir "$exp_dir/transcripts")
    transcribe_examples 1 "${sets[@]#*=}" -- --lm "$exp_dir/lm" "${out[@]}"
  done
fi

if run_stage 5 "summary"; then
  echo "corpus and manifests:  $data_dir (settings.json, train/dev/test.jsonl)"
  echo "checkpoints:           $exp_dir/best.pt (with the tuned decoder values), $exp_dir/last.pt"
  echo "language model:        $exp_dir/lm (lm.arpa, lm.bin, lexicon.txt)"
  echo "results:               $exp_dir/results.json (NAME-lm: beam search with the LM)"
  echo "per-utterance reports: $exp_dir/errs-*.txt"
  echo "transcripts:           $exp_dir/transcripts (JSON with word times, SRT subtitles)"
  echo "training curves:       tensorboard --logdir $exp_dir/tensorboard"
  print_results
fi
