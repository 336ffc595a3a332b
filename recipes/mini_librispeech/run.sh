#!/usr/bin/env bash
# Mini LibriSpeech (OpenSLR 31: train-clean-5, 5 h of LibriSpeech's train-clean-100, and
# dev-clean-2, 16 kHz): prepare through lhotse -> train 2 conv + 5 bidirectional GRU layers
# of 512 units -> the official LibriSpeech LMs (OpenSLR 11), decoder tuned on dev-clean-2 ->
# evaluate on dev-clean-2 (greedy, beam search + each LM) -> transcribe two dev files. Mini
# LibriSpeech has no test part: as in Kaldi's egs/mini_librispeech, dev-clean-2 is both where
# the decoder is tuned and what is reported, so its beam-search figures are optimistic; add
# `--test-parts test-clean` with a LibriSpeech copy that has it to score held-out speech.
#
#   bash recipes/mini_librispeech/run.sh --exp-dir exp/mini_librispeech [--source DIR]
#        [--stage N] [--stop-stage N] [--train-parts P] [--dev-parts P] [--test-parts P,P]
#        [--allow-partial] [--lm official|train|none] [--lm-source DIR]
#        [--official-lms F,F] [-- section.key=value ...]
#
# Without --source: $ASR_DATA/mini_librispeech (holding LibriSpeech/<part>/) when there, else
# both parts (460 MB) downloaded into data/mini_librispeech. The LM options are those of
# recipes/librispeech/run.sh (--lm official downloads 1.4 GB; --lm train is a 3-gram of the
# 5 h of training text).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../librispeech/stages.sh"
librispeech_options train-clean-5 dev-clean-2 ""
parse_options "$@"
librispeech_stages mini_librispeech mini_librispeech
