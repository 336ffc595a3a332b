# The stages of the LibriSpeech and Mini LibriSpeech recipes, sourced by their run.sh after
# recipes/common.sh; what differs between the two (dataset name, default parts, config) is set
# there. Call librispeech_options before parse_options, then librispeech_stages.

# librispeech_options TRAIN DEV TEST: the recipe's own options, with its default parts.
librispeech_options() {
  recipe_option --train-parts "$1"
  recipe_option --dev-parts "$2"
  recipe_option --test-parts "$3"
  recipe_flag --allow-partial
  recipe_option --lm official
  recipe_option --lm-source ""
  recipe_option --official-lms 3-gram.pruned.1e-7.arpa.gz,4-gram.arpa.gz
}

# lm_folders: the LM folders of the chosen --lm, one a line (none for --lm none).
lm_folders() {
  local name
  case $lm in
    official)
      for name in ${official_lms//,/ }; do echo "$exp_dir/lms/${name%.arpa.gz}"; done ;;
    train) echo "$exp_dir/lm" ;;
  esac
}

# lm_label FOLDER: the suffix of a result's name for an LM folder ("3-gram.pruned.1e-7", "lm").
lm_label() { basename "$1"; }

# librispeech_stages DATASET FOLDER: the five stages; FOLDER is the corpus's folder under
# $ASR_DATA (holding LibriSpeech/<part>/).
librispeech_stages() {
  local dataset=$1 folder=$2 part lm_dir sets=() first
  [[ $lm =~ ^(official|train|none)$ ]] || usage_error "--lm takes official, train or none"
  [ "$lm" = none ] || check_lm_prerequisites 2  # --lm official needs KenLM's build_binary
  local partial=()
  [ "$allow_partial" = 1 ] && partial=(--allow-partial)

  if run_stage 0 "manifests: train ($train_parts), dev ($dev_parts), test (${test_parts:-none})"; then
    corpus_args "$dataset" "$folder"
    $asr prepare "$dataset" "${corpus_args[@]}" --out-dir "$data_dir" \
      --train-parts "$train_parts" --dev-parts "$dev_parts" --test-parts "$test_parts" \
      "${partial[@]}"
  fi

  if run_stage 1 "train"; then
    train_or_resume "$recipe_dir/config.yaml" "$data_dir/train.jsonl" "$data_dir/dev.jsonl"
  fi

  if run_stage 2 "word LM(s) ($lm), decoder tuned on dev"; then
    case $lm in
      official)
        # OpenSLR 11: the official ARPA models, lower-cased into LM folders whose lexicon is
        # the words of librispeech-lexicon.txt (data_prep/librispeech.py).
        corpus_args librispeech_lm librispeech-lm "$lm_source"
        $asr prepare librispeech_lm "${corpus_args[@]}" --out-dir "$exp_dir/lms" \
          --models "$official_lms" ;;
      train) $asr lm build --text "$data_dir/train.jsonl" --order 3 --out "$exp_dir/lm" ;;
      none) echo "no LM (--lm none): beam search skipped" ;;
    esac
    for lm_dir in $(lm_folders); do
      $asr tune-decoder --model "$exp_dir/best.pt" --manifest "$data_dir/dev.jsonl" \
        --lm "$lm_dir"
    done
  fi

  if run_stage 3 "evaluate the best checkpoint: greedy, then beam search with each LM"; then
    # Beam search on the test parts (on dev only when there are none: tune-decoder already
    # printed dev's WER with the tuned values); greedy on them and on dev, unless dev is one of
    # the test parts (the sample corpus).
    for part in ${test_parts//,/ }; do sets+=("$part=$data_dir/$part.jsonl"); done
    [ ${#sets[@]} -gt 0 ] || sets=("dev=$data_dir/dev.jsonl")
    if [[ ",$test_parts," == *",$dev_parts,"* ]] || [ -z "$test_parts" ]; then
      evaluate_sets "${sets[@]}"
    else
      evaluate_sets "dev=$data_dir/dev.jsonl" "${sets[@]}"
    fi
    for lm_dir in $(lm_folders); do
      local lm_sets=()
      for entry in "${sets[@]}"; do lm_sets+=("${entry%%=*}-$(lm_label "$lm_dir")=${entry#*=}"); done
      evaluate_sets "${lm_sets[@]}" -- --lm "$lm_dir"
    done
    print_results
  fi

  if run_stage 4 "transcribe two files (beam search with the first LM, if any)"; then
    first=${test_parts%%,*}
    local manifest=$data_dir/${first:-dev}.jsonl folders=() lm_flags=()
    mapfile -t folders < <(lm_folders)
    [ ${#folders[@]} -gt 0 ] && lm_flags=(--lm "${folders[0]}")
    transcribe_examples 2 "$manifest" -- "${lm_flags[@]}"
  fi
}
