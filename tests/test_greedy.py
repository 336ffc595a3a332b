"""Greedy CTC decoding on hand-built log-probabilities with exact expected ids and texts."""

from __future__ import annotations

import math

import pytest
import torch

from asr.decoding.greedy import GreedyDecoder, collapse_paths, ctc_greedy_decode
from asr.tokenizers import CharTokenizer, PhoneTokenizer

VOCAB = 4  # blank (0) + three tokens


def log_probs(*paths: list[int], vocab: int = VOCAB) -> torch.Tensor:
    """Best paths (one list of ids per utterance, padded with blanks) -> (B, T, V) log-probs.

    The best id of each frame gets 0.7, the rest share 0.3, so argmax is unambiguous.
    """
    t = max(len(p) for p in paths)
    probs = torch.full((len(paths), t, vocab), 0.3 / (vocab - 1))
    for b, path in enumerate(paths):
        for i in range(t):
            probs[b, i, path[i] if i < len(path) else 0] = 0.7
    return probs.log()


def decode(*paths: list[int], lengths: list[int] | None = None) -> list[list[int]]:
    lengths = lengths if lengths is not None else [len(p) for p in paths]
    return ctc_greedy_decode(log_probs(*paths), torch.tensor(lengths))


def test_repeats_collapse():
    assert decode([1, 1, 1, 2, 2, 3]) == [[1, 2, 3]]


def test_blank_separates_repeats():
    assert decode([1, 0, 1]) == [[1, 1]]
    assert decode([1, 1, 0, 0, 1, 1]) == [[1, 1]]


def test_blanks_are_dropped():
    assert decode([0, 1, 0, 0, 2, 0, 3, 3, 0]) == [[1, 2, 3]]


def test_all_blank_gives_nothing():
    assert decode([0, 0, 0, 0]) == [[]]


def test_frames_beyond_length_are_ignored():
    # Frames 3.. hold tokens that must not appear, including a repeat that would continue a run.
    assert decode([1, 2, 0, 3, 3, 1], lengths=[3]) == [[1, 2]]
    assert decode([1, 2, 2, 2], lengths=[2]) == [[1, 2]]
    assert decode([2, 3], lengths=[0]) == [[]]


def test_batch_of_different_lengths():
    paths = [
        [1, 1, 0, 1, 2, 2, 3, 0],  # length 8
        [3, 0, 3, 3, 2, 1, 1, 1],  # length 5: frames 5.. ignored
        [2, 2, 0, 1, 3, 3, 3, 3],  # length 3
    ]
    assert decode(*paths, lengths=[8, 5, 3]) == [[1, 1, 2, 3], [3, 3, 2], [2]]


def test_result_does_not_depend_on_batch_mates():
    a, b = [1, 0, 1, 2], [3, 3, 0, 2, 2, 1, 0]
    together = decode(a, b, lengths=[4, 7])
    assert together == [decode(a)[0], decode(b)[0]] == [[1, 1, 2], [3, 2, 1]]


def test_non_zero_blank_id():
    lp = log_probs([1, 1, 2, 1, 3, 0])
    assert ctc_greedy_decode(lp, torch.tensor([6]), blank=1) == [[2, 3, 0]]


def test_doctest_example():
    lp = torch.log(torch.tensor([[[0.1, 0.9, 0], [0.1, 0.9, 0], [0.9, 0.1, 0], [0.1, 0.9, 0]]]))
    assert ctc_greedy_decode(lp, torch.tensor([4])) == [[1, 1]]


def test_collapse_paths_matches_the_decoder_on_argmax_paths():
    paths = [[1, 1, 0, 1, 2, 2, 3, 0], [3, 0, 3, 3, 2, 1, 1, 1]]
    lp = log_probs(*paths)
    lengths = torch.tensor([8, 5])
    assert collapse_paths(lp.argmax(-1), lengths) == ctc_greedy_decode(lp, lengths)
    assert collapse_paths(torch.tensor(paths), lengths) == [[1, 1, 2, 3], [3, 3, 2]]


def test_greedy_decoder_tidies_spaces_and_keeps_its_path():
    tok = CharTokenizer(" ab")  # ids: blank 0, space 1, a 2, b 3
    # " a", blank, " ", blank, " b " -> decoded " a  b " before tidying; frames 8.. ignored
    paths = [[1, 2, 0, 1, 0, 1, 3, 1, 2, 2], [3, 3, 0, 3, 1, 1, 2, 0, 0, 0]]
    lp = log_probs(*paths)
    hyps = GreedyDecoder(tok).decode(lp, torch.tensor([8, 10]))
    assert [len(h) for h in hyps] == [1, 1]
    first, second = hyps[0][0], hyps[1][0]
    assert (first.text, first.token_ids) == ("a b", tok.encode("a b"))
    assert first.path == paths[0][:8]
    assert (second.text, second.token_ids) == ("bb a", tok.encode("bb a"))
    assert second.path == paths[1]
    # the score is the path's log-prob: 0.7 on each of its frames
    assert first.score == pytest.approx(8 * math.log(0.7), abs=1e-5)
    assert second.score == pytest.approx(10 * math.log(0.7), abs=1e-5)


def test_greedy_decoder_joins_phones_with_single_spaces():
    tok = PhoneTokenizer(["aa", "k", "t"])  # ids: blank 0, aa 1, k 2, t 3
    (hyp,), (empty,) = GreedyDecoder(tok).decode(
        log_probs([2, 2, 0, 1, 3, 3], [0, 0, 0]), torch.tensor([6, 3])
    )
    assert (hyp.text, hyp.token_ids) == ("k aa t", [2, 1, 3])
    assert (empty.text, empty.token_ids, empty.path) == ("", [], [0, 0, 0])


def test_names_import_from_their_former_modules():
    """Code that imports the decoders and tokenizers by their former module paths still runs."""
    import asr.beam
    import asr.decode
    import asr.decoders
    import asr.decoding
    import asr.decoding.beam
    import asr.decoding.choose
    import asr.decoding.greedy
    import asr.text
    import asr.tokenizers

    assert asr.decode.ctc_greedy_decode is asr.decoding.greedy.ctc_greedy_decode
    for name in ("BeamConfig", "BeamSearchDecoder", "DecoderError", "read_word_list"):
        assert getattr(asr.beam, name) is getattr(asr.decoding.beam, name)
    assert asr.beam.Hypothesis is asr.decoding.Hypothesis
    for name in ("LMChoice", "make_decoder", "resolve_lm", "tuned_settings", "decoder_words"):
        assert getattr(asr.decoders, name) is getattr(asr.decoding.choose, name)
    for name in ("BLANK", "CharTokenizer", "SymbolTokenizer", "TokenizerError"):
        assert getattr(asr.text, name) is getattr(asr.tokenizers, name)
