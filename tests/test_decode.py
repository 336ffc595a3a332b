"""ctc_greedy_decode on hand-built log-probabilities with exact expected ids."""

from __future__ import annotations

import torch

from asr.decode import ctc_greedy_decode

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
