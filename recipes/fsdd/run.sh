#!/usr/bin/env bash
# Free Spoken Digit Dataset recipe: prepare -> train -> LM of the training text and decoder
# tuning on dev -> evaluate (greedy, lexicon of the ten digit words, lexicon + LM) ->
# transcribe examples.
#
#   bash recipes/fsdd/run.sh --exp-dir exp/fsdd [--source DIR] [--split standard|speaker:NAME]
#        [--stage N] [--stop-stage N] [-- section.key=value ...]
#
# Without --source the v1.0.10 release is downloaded into data/fsdd. Every stage can be rerun
# alone; training continues from EXP_DIR/last.pt when it exists.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=""
exp_dir=""
split="standard"
stage=0
stop_stage=4
asr=${ASR:-asr}

while [ $# -gt 0 ]; do
  case "$1" in
    --source) source_dir=$2; shift 2 ;;
    --exp-dir) exp_dir=$2; shift 2 ;;
    --split) split=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$exp_dir" ] || { echo "run.sh: --exp-dir is required" >&2; exit 2; }
overrides=("$@")
data_dir=$exp_dir/data

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "== stage 0: manifests ($split split)"
  if [ -n "$source_dir" ]; then
    $asr prepare fsdd --source "$source_dir" --out-dir "$data_dir" --split "$split"
  else
    $asr prepare fsdd --download-dir data/fsdd --out-dir "$data_dir" --split "$split"
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  echo "== stage 1: train"
  resume=()
  [ -f "$exp_dir/last.pt" ] && resume=(--resume)
  start=$(date +%s)
  if [ ${#resume[@]} -gt 0 ]; then
    $asr train --out-dir "$exp_dir" --resume "${overrides[@]}"
  else
    $asr train --config "$here/config.yaml" --out-dir "$exp_dir" \
      data.train_manifest="$data_dir/train.jsonl" data.dev_manifest="$data_dir/dev.jsonl" \
      "${overrides[@]}"
  fi
  echo "training wall time: $(( $(date +%s) - start )) s"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "== stage 2: word bigram LM of the training text (its lexicon: the ten digit words)"
  $asr lm build --text "$data_dir/train.jsonl" --order 2 --out "$exp_dir/lm"
  $asr tune-decoder --model "$exp_dir/best.pt" --manifest "$data_dir/dev.jsonl" --lm "$exp_dir/lm"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  echo "== stage 3: evaluate the best checkpoint (greedy; lexicon only; lexicon + LM)"
  common=(--model "$exp_dir/best.pt" --out-dir "$exp_dir" --results "$exp_dir/results.json")
  for set in dev test; do
    $asr evaluate "${common[@]}" --manifest "$data_dir/$set.jsonl" --name "$set"
  done
  $asr evaluate "${common[@]}" --manifest "$data_dir/test.jsonl" --name test-lexicon \
    --lexicon "$exp_dir/lm/lexicon.txt"
  $asr evaluate "${common[@]}" --manifest "$data_dir/test.jsonl" --name test-lm --lm "$exp_dir/lm"
  echo "results: $exp_dir/results.json"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  echo "== stage 4: transcribe two test files"
  mapfile -t examples < <(head -n 2 "$data_dir/test.jsonl" \
    | python3 -c 'import json,sys; [print(json.loads(l)["audio_filepath"]) for l in sys.stdin]')
  $asr transcribe --model "$exp_dir/best.pt" "${examples[@]}"
fi
