#!/usr/bin/env bash
# Synthetic speech recipe, no download needed: synthesise connected digits with every offline
# voice -> train -> n-gram LM on the training text, decoder tuned on the dev voices -> evaluate
# (greedy and beam search + LM) on voices never heard in training and on real human digits
# (FSDD) -> transcribe two examples with word times -> summary.
#
#   bash recipes/synth/run.sh --exp-dir exp/synth [--fsdd DIR] [--num-train N] [--num-eval N]
#        [--mix-fsdd] [--stage N] [--stop-stage N] [-- section.key=value ...]
#
# --fsdd DIR: an unpacked FSDD copy for the real-speech test (default: ../shared's copy when
#   present, else a download into data/fsdd; the FSDD test is skipped when neither works).
# --mix-fsdd: train on FSDD's standard training takes (10-49 of every speaker) as well.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
exp_dir=""
fsdd=""
num_train=3000
num_eval=300
mix_fsdd=0
stage=0
stop_stage=5
asr=${ASR:-asr}

while [ $# -gt 0 ]; do
  case "$1" in
    --exp-dir) exp_dir=$2; shift 2 ;;
    --fsdd) fsdd=$2; shift 2 ;;
    --num-train) num_train=$2; shift 2 ;;
    --num-eval) num_eval=$2; shift 2 ;;
    --mix-fsdd) mix_fsdd=1; shift ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$exp_dir" ] || { echo "run.sh: --exp-dir is required" >&2; exit 2; }
overrides=("$@")
data=$exp_dir/data
shared_fsdd=$root/../shared/data/free-spoken-digit-dataset-1.0.10
if [ -z "$fsdd" ] && [ -d "$shared_fsdd/recordings" ]; then fsdd=$shared_fsdd; fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "== stage 0: synthesise connected digits; dev and test voices are never trained on"
  $asr prepare synth --out-dir "$data" --num-train "$num_train" --num-dev "$num_eval" \
    --num-test "$num_eval" --band-limit
  echo "== stage 0: real human digits (FSDD)"
  if [ -n "$fsdd" ]; then
    $asr prepare fsdd --source "$fsdd" --out-dir "$exp_dir/fsdd"
  elif ! $asr prepare fsdd --download-dir data/fsdd --out-dir "$exp_dir/fsdd"; then
    echo "FSDD is neither in ../shared nor downloadable: its test is skipped"
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  echo "== stage 1: train"
  train=$data/train.jsonl
  if [ "$mix_fsdd" = 1 ]; then
    [ -f "$exp_dir/fsdd/train.jsonl" ] || { echo "run.sh: --mix-fsdd needs FSDD" >&2; exit 1; }
    train=$train,$exp_dir/fsdd/train.jsonl
  fi
  start=$(date +%s)
  if [ -f "$exp_dir/last.pt" ]; then
    $asr train --out-dir "$exp_dir" --resume "${overrides[@]}"
  else
    $asr train --config "$here/config.yaml" --out-dir "$exp_dir" \
      data.train_manifest="$train" data.dev_manifest="$data/dev.jsonl" "${overrides[@]}"
  fi
  echo "training wall time: $(( $(date +%s) - start )) s"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "== stage 2: 3-gram word LM of the training text; LM weight and word bonus tuned on dev"
  $asr lm build --text "$data/train.jsonl" --order 3 --out "$exp_dir/lm"
  $asr tune-decoder --model "$exp_dir/best.pt" --manifest "$data/dev.jsonl" --lm "$exp_dir/lm"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  echo "== stage 3: evaluate the best checkpoint: greedy, then beam search with the LM"
  sets=("synth-test:$data/test.jsonl")
  if [ -f "$exp_dir/fsdd/test.jsonl" ]; then
    sets+=("fsdd-test:$exp_dir/fsdd/test.jsonl")
  else
    echo "no FSDD manifests: real human speech not evaluated"
  fi
  for entry in "${sets[@]}"; do
    name=${entry%%:*} manifest=${entry#*:}
    $asr evaluate --model "$exp_dir/best.pt" --manifest "$manifest" --name "$name" \
      --out-dir "$exp_dir" --results "$exp_dir/results.json"
    $asr evaluate --model "$exp_dir/best.pt" --manifest "$manifest" --name "$name-lm" \
      --lm "$exp_dir/lm" --out-dir "$exp_dir" --results "$exp_dir/results.json"
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  echo "== stage 4: transcribe two files (an unseen synthetic voice, a real human if present)"
  examples=("$data/$(head -n 1 "$data/test.jsonl" | sed 's/.*"audio_filepath": "\([^"]*\)".*/\1/')")
  if [ -f "$exp_dir/fsdd/test.jsonl" ]; then
    examples+=("$(head -n 1 "$exp_dir/fsdd/test.jsonl" | sed 's/.*"audio_filepath": "\([^"]*\)".*/\1/')")
  fi
  $asr transcribe --model "$exp_dir/best.pt" --lm "$exp_dir/lm" "${examples[@]}"
  $asr transcribe --model "$exp_dir/best.pt" --lm "$exp_dir/lm" --format json \
    --out-dir "$exp_dir/transcripts" "${examples[@]}"
  $asr transcribe --model "$exp_dir/best.pt" --lm "$exp_dir/lm" --format srt \
    --out-dir "$exp_dir/transcripts" "${examples[@]}"
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  echo "== summary"
  echo "corpus and manifests:  $data (settings.json, train/dev/test.jsonl)"
  echo "checkpoints:           $exp_dir/best.pt (with the tuned decoder values), $exp_dir/last.pt"
  echo "language model:        $exp_dir/lm (lm.arpa, lm.bin, lexicon.txt)"
  echo "results:               $exp_dir/results.json (NAME-lm: beam search with the LM)"
  echo "per-utterance reports: $exp_dir/errs-*.txt"
  echo "transcripts:           $exp_dir/transcripts (JSON with word times, SRT subtitles)"
  echo "training curves:       tensorboard --logdir $exp_dir/tensorboard"
  python3 -c 'import json, sys
for name, r in sorted(json.load(open(sys.argv[1])).items()):
    wer, cer, n = 100 * r["wer"], 100 * r["cer"], r["utterances"]
    print(f"{name:>14}: WER {wer:.2f}%  CER {cer:.2f}%  ({n} utterances)")' \
    "$exp_dir/results.json"
fi
