#!/usr/bin/env bash
# LibriSpeech (OpenSLR 12: 960 h of read English audiobooks, 16 kHz): prepare through lhotse
# (train = the 960 h, dev = dev-clean, test = test-clean and test-other) -> train 2 conv + 5
# bidirectional LSTM layers of 1024 units (deepspeech.pytorch's LibriSpeech size) -> the
# official LMs (OpenSLR 11: 3-gram pruned 1e-7 and 4-gram, lexicon librispeech-lexicon.txt),
# decoder tuned on dev for each -> evaluate (greedy, beam search + each LM) -> transcribe two
# test files. Needs a GPU and the corpus (about 60 GB); RESULTS.md has the expected cost.
#
#   bash recipes/librispeech/run.sh --exp-dir exp/librispeech [--source DIR] [--stage N]
#        [--stop-stage N] [--train-parts P,P] [--dev-parts P] [--test-parts P,P]
#        [--allow-partial] [--lm official|train|none] [--lm-source DIR]
#        [--official-lms F,F] [-- section.key=value ...]
#
# Without --source: the copy $ASR_DATA/librispeech (holding LibriSpeech/<part>/) when there,
# else all seven parts downloaded into data/librispeech. --lm official (the default) takes the
# OpenSLR 11 files from --lm-source DIR, else $ASR_DATA/librispeech-lm, else downloads them
# (1.4 GB) into data/librispeech_lm; --lm train builds a word 3-gram of the training text
# instead; --lm none skips beam search. The 4 test-clean utterances of the sample corpus, on a
# CPU in a minute (see RESULTS.md):
#   bash recipes/librispeech/run.sh --source ../shared/data/librispeech-sample \
#     --exp-dir exp/ls-sample --train-parts test-clean --dev-parts test-clean \
#     --test-parts test-clean --allow-partial --lm train -- model.hidden_size=64 ...
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/stages.sh"
librispeech_options train-clean-100,train-clean-360,train-other-500 dev-clean \
  test-clean,test-other
parse_options "$@"
librispeech_stages librispeech librispeech
