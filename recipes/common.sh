# The skeleton every recipes/<name>/run.sh sources: options, stages, corpus location, checks of
# what the LM stage needs (before training), training that resumes, LM + decoder tuning,
# evaluation into results.json (written by `asr train` and `asr evaluate`), example transcripts.
#
# A recipe (see recipes/yesno/run.sh, the smallest):
#
#   #!/usr/bin/env bash
#   # One paragraph of comments: what it does and its usage (printed by --help).
#   set -euo pipefail
#   source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
#   recipe_option --split standard       # an extra option with a value: $split
#   recipe_flag --mix-fsdd               # an extra flag: $mix_fsdd is 0, or 1 when given
#   parse_options "$@"
#   if run_stage 0 "manifests"; then ...; fi
#
# Every recipe takes --exp-dir DIR (required), --source DIR, --stage N, --stop-stage N, -h/--help
# and, after `--`, `section.key=value` training overrides. After parse_options:
#   exp_dir, data_dir ($exp_dir/data), source_dir (--source, may be empty), stage, stop_stage,
#   overrides (array), recipe_dir, repo_root, asr (the asr command: $ASR, else `asr` on the
#   PATH, else the repository's .venv/bin/asr; left unquoted where used, so
#   ASR="python -m asr.cli" works), ASR_DATA (see below).
#
# ASR_DATA is where local copies of corpora live (default: ../shared/data beside the
# repository); a recipe names only its own folder under it (corpus_args). Downloads go to
# data/<name> in the repository.

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
recipe_script=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)/$(basename "${BASH_SOURCE[1]}")
recipe_dir=$(dirname "$recipe_script")
ASR_DATA=${ASR_DATA:-$(dirname "$repo_root")/shared/data}
if [ -n "${ASR:-}" ]; then
  asr=$ASR
elif command -v asr > /dev/null; then
  asr=asr
elif [ -x "$repo_root/.venv/bin/asr" ]; then  # what `make install` made, not activated
  asr=$repo_root/.venv/bin/asr
else
  echo "recipes: no asr command: run 'make install' (makes .venv) or 'pip install -e .', or set ASR" >&2
  exit 1
fi
exp_dir=""
source_dir=""
stage=0
stop_stage=99
overrides=()
_value_options=" --exp-dir --source --stage --stop-stage "  # the recipe's own are added
_flag_options=" "

# recipe_option --NAME DEFAULT: an extra option taking a value, stored in $NAME (dashes become
# underscores). recipe_flag --NAME: an extra flag; $NAME is 0, or 1 when given.
recipe_option() { _value_options+="$1 "; printf -v "$(_option_var "$1")" '%s' "$2"; }
recipe_flag() { _flag_options+="$1 "; printf -v "$(_option_var "$1")" '%s' 0; }
_option_var() {  # --stop-stage -> stop_stage; --source -> source_dir
  local name=${1#--}
  name=${name//-/_}
  [ "$name" = source ] && name=source_dir
  echo "$name"
}

usage() {  # the recipe's header comment, without the #! line and the comment marks
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$recipe_script"
}

# usage_error MESSAGE: "recipes/NAME/run.sh: MESSAGE (see --help)" on stderr, exit status 2.
usage_error() { echo "${recipe_script#"$repo_root"/}: $* (see --help)" >&2; exit 2; }

parse_options() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --) shift; overrides=("$@"); break ;;
      -h|--help) usage; exit 0 ;;
    esac
    if [[ $_value_options == *" $1 "* ]]; then
      [ $# -ge 2 ] || usage_error "$1 needs a value"
      printf -v "$(_option_var "$1")" '%s' "$2"
      shift 2
    elif [[ $_flag_options == *" $1 "* ]]; then
      printf -v "$(_option_var "$1")" '%s' 1
      shift
    else
      usage_error "unknown argument '$1'"
    fi
  done
  [ -n "$exp_dir" ] || usage_error "--exp-dir is required"
  [[ $stage =~ ^[0-9]+$ && $stop_stage =~ ^[0-9]+$ ]] ||
    usage_error "--stage and --stop-stage take a stage number"
  data_dir=$exp_dir/data
}

# stage_selected N: true when N lies in [--stage, --stop-stage].
stage_selected() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

# if run_stage N "title"; then ...; fi: true when stage N is selected; announces it.
run_stage() {
  stage_selected "$1" || return 1
  echo "== stage $1: $2"
}

# missing_for_stage N: after a check has named what is missing (on stderr), stop the recipe
# before anything is trained.
missing_for_stage() {
  echo "${recipe_script#"$repo_root"/}: stage $1 needs what is named above: install it, then" \
    "run the recipe again" >&2
  exit 1
}

# check_lm_prerequisites N [WORD_LIST...]: when stage N (language models) is selected, make
# sure now, before any training, that each `asr lm build --spell` WORD_LIST can be read and
# that KenLM's lmplz and build_binary are there: on the PATH or in the cache, else built into
# the cache (once per machine, a minute or two). Whatever is missing is named in one line with
# how to get it, and the recipe stops.
check_lm_prerequisites() {
  local lm_stage=$1 words
  shift
  stage_selected "$lm_stage" || return 0
  echo "== what stage $lm_stage (language models) needs: KenLM${*:+, the word list(s) $*}"
  for words in "$@"; do
    $asr lm words "$words" || missing_for_stage "$lm_stage"
  done
  $asr lm install-kenlm || missing_for_stage "$lm_stage"
}

# corpus_args NAME FOLDER [DIR]: sets the array corpus_args to the `asr prepare NAME` arguments
# that say where the corpus is: --source DIR when DIR (default: --source) is given; else the
# copy $ASR_DATA/FOLDER when it exists (said on stdout); else --download-dir data/NAME.
corpus_args() {
  local name=$1 folder=$2 given=${3-$source_dir}
  if [ -n "$given" ]; then
    corpus_args=(--source "$given")
  elif [ -d "$ASR_DATA/$folder" ]; then
    echo "using the local copy $ASR_DATA/$folder (ASR_DATA; --source DIR for another)"
    corpus_args=(--source "$ASR_DATA/$folder")
  else
    echo "no $ASR_DATA/$folder (ASR_DATA): downloading $name into $repo_root/data/$name"
    corpus_args=(--download-dir "$repo_root/data/$name")
  fi
}

# train_or_resume CONFIG TRAIN_MANIFESTS DEV_MANIFEST: train from CONFIG (TRAIN_MANIFESTS may be
# a comma-separated list), or continue with --resume when $exp_dir/last.pt exists; both with
# the overrides. `asr train --results` stores the wall time under "training" in results.json.
train_or_resume() {
  if [ -f "$exp_dir/last.pt" ]; then
    $asr train --out-dir "$exp_dir" --resume --results "$exp_dir/results.json" "${overrides[@]}"
  else
    $asr train --config "$1" --out-dir "$exp_dir" --results "$exp_dir/results.json" \
      data.train_manifest="$2" data.dev_manifest="$3" "${overrides[@]}"
  fi
}

# lm_and_tune ORDER TEXT DEV_MANIFEST: an ORDER-gram word LM (and lexicon) of TEXT (a file or
# manifest) in $exp_dir/lm; the beam search's LM weight and word bonus tuned on DEV_MANIFEST
# and stored in best.pt.
lm_and_tune() {
  $asr lm build --text "$2" --order "$1" --out "$exp_dir/lm"
  $asr tune-decoder --model "$exp_dir/best.pt" --manifest "$3" --lm "$exp_dir/lm"
}

# evaluate_sets NAME=MANIFEST ... [-- asr evaluate flags]: evaluate best.pt on each manifest;
# errs-NAME.txt and summary-NAME.json in $exp_dir, figures under NAME in results.json.
evaluate_sets() {
  local sets=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do sets+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  local entry
  for entry in "${sets[@]}"; do
    $asr evaluate --model "$exp_dir/best.pt" --manifest "${entry#*=}" --name "${entry%%=*}" \
      --out-dir "$exp_dir" --results "$exp_dir/results.json" "$@"
  done
}

# example_files N MANIFEST...: the first N audio files of each manifest, one a line (relative
# paths resolved against the manifest's folder).
example_files() {
  python3 - "$@" <<'EOF'
import itertools, json, os, sys
for manifest in sys.argv[2:]:
    with open(manifest) as f:
        for line in itertools.islice(f, int(sys.argv[1])):
            path = json.loads(line)["audio_filepath"]
            print(os.path.join(os.path.dirname(manifest), path))
EOF
}

# transcribe_examples N MANIFEST... [-- asr transcribe flags]: transcribe the first N files of
# each manifest with best.pt (FILE<TAB>TEXT on stdout unless the flags say otherwise).
transcribe_examples() {
  local n=$1 manifests=() files=() list
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do manifests+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  list=$(example_files "$n" "${manifests[@]}")  # not in <(...): set -e sees a failure here
  mapfile -t files <<< "$list"
  $asr transcribe --model "$exp_dir/best.pt" "$@" "${files[@]}"
}

# print_results: one line per evaluated set of results.json, and the training wall time.
print_results() {
  python3 - "$exp_dir/results.json" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))
for name, r in sorted(results.items()):
    if "wer" in r:
        wer, cer, n = 100 * r["wer"], 100 * r["cer"], r["utterances"]
        print(f"{name:>14}: WER {wer:.2f}%  CER {cer:.2f}%  ({n} utterances)")
if "training" in results:
    print(f"{'training':>14}: {results['training']['wall_seconds']} s wall time")
EOF
}
