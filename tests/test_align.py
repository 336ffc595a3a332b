"""word_timings on log-probs built from a known frame alignment."""

from __future__ import annotations

import pytest
import torch

from asr.align import WordTiming, path_word_timings, word_timings
from asr.tokenizers import CharTokenizer

TOKENIZER = CharTokenizer(" abcdefghijklmnopqrstuvwxyz'")
SPACE = TOKENIZER.encode(" ")[0]
FRAME = 0.04  # seconds


def peaked_log_probs(frames: str, peak: float = 0.9) -> torch.Tensor:
    """One character per frame ("_" = blank) -> (T, V) log-probs.

    The frame's label gets `peak`, the other ids share the rest; an upper-case letter marks a
    flat frame, where its (lower-case) label gets only 0.1.
    """
    vocab = TOKENIZER.vocab_size
    rows = []
    for c in frames:
        p = 0.1 if c.isupper() else peak
        row = torch.full((vocab,), (1 - p) / (vocab - 1))
        row[0 if c == "_" else TOKENIZER.encode(c.lower())[0]] = p
        rows.append(row)
    return torch.stack(rows).log()  # (T, V)


def true_words(frames: str) -> list[tuple[str, float, float]]:
    """Frame string -> (word, start, end) in seconds: each word runs from its first to its last
    non-blank frame, between space frames."""
    out, t = [], 0
    for segment in frames.split(" "):
        labelled = [i for i, c in enumerate(segment) if c != "_"]
        if labelled:
            word = "".join(
                c for i, c in enumerate(segment) if c != "_" and (i == 0 or c != segment[i - 1])
            )
            out.append((word.lower(), (t + labelled[0]) * FRAME, (t + labelled[-1] + 1) * FRAME))
        t += len(segment) + 1
    return out


def align(frames: str, text: str, **kwargs) -> list[WordTiming]:
    lp = kwargs.pop("log_probs", None)
    lp = peaked_log_probs(frames) if lp is None else lp
    return word_timings(lp, TOKENIZER.encode(text), SPACE, FRAME, tokens=TOKENIZER.tokens, **kwargs)


def assert_within_one_frame(words: list[WordTiming], frames: str) -> None:
    truth = true_words(frames)
    assert [w.word for w in words] == [word for word, _, _ in truth]
    for w, (_, start, end) in zip(words, truth, strict=True):
        assert w.start == pytest.approx(start, abs=FRAME), w
        assert w.end == pytest.approx(end, abs=FRAME), w
        assert w.start < w.end


def test_times_within_one_frame():
    frames = "___hh_e_ll_l_oo__ ___w_orr_l_d____ _a___"
    words = align(frames, "hello world a")
    assert_within_one_frame(words, frames)


def test_times_exact_for_a_hand_counted_case():
    # frames: 0-1 blank, 2-3 "hi", 4 blank, 5 space, 6 "y", 7-8 "o", 9 "u", 10 blank
    words = align("__hi_ yoou_", "hi you")
    assert [(w.word, w.start, w.end) for w in words] == [
        ("hi", pytest.approx(2 * FRAME), pytest.approx(4 * FRAME)),
        ("you", pytest.approx(6 * FRAME), pytest.approx(10 * FRAME)),
    ]


def test_extra_spaces_are_ignored():
    frames = "__go__ __on___"
    clean = align(frames, "go on")
    assert_within_one_frame(clean, frames)
    for text in ("  go on", "go on  ", "go   on", " go  on "):
        assert align(frames, text) == clean, text


def test_repeated_letters_separated_by_blank():
    frames = "_t_o_o__ _b_ee_e__"
    words = align(frames, "too bee")
    assert_within_one_frame(words, frames)
    assert words[0].start == pytest.approx(1 * FRAME)
    assert words[0].end == pytest.approx(6 * FRAME)


def test_confidence_higher_for_confident_frames():
    frames = "_sure__ _MAYBE_"
    sure, maybe = align(frames, "sure maybe")
    assert 0 <= maybe.confidence < sure.confidence <= 1
    # Geometric mean of each character's best-frame posterior: all 0.9 for "sure".
    assert sure.confidence == pytest.approx(0.9, abs=1e-4)
    assert maybe.confidence == pytest.approx(0.1, abs=1e-4)


def test_confidence_within_unit_interval_for_a_certain_path():
    lp = peaked_log_probs("_ok_", peak=1.0)  # log 0 = -inf off the path
    (ok,) = align("_ok_", "ok", log_probs=lp)
    assert ok.confidence == 1.0
    assert (ok.start, ok.end) == (pytest.approx(FRAME), pytest.approx(3 * FRAME))


def test_empty_hypothesis():
    assert align("____", "") == []
    assert align("____", "   ") == []


def test_unalignable_hypothesis_raises():
    with pytest.raises(ValueError, match="cannot align"):
        align("_ab_", "abcdef")
    # "aa" needs a blank between the two a's: 3 frames for 2 tokens.
    with pytest.raises(ValueError, match="1 repeats"):
        align("aa", "aa")


def test_blank_in_hypothesis_raises():
    lp = peaked_log_probs("_ab_")
    with pytest.raises(ValueError, match="blank"):
        word_timings(lp, [1, 0, 2], SPACE, FRAME)


def test_not_one_utterance_raises():
    lp = peaked_log_probs("_ab_")
    with pytest.raises(ValueError, match=r"\(T, V\)"):
        word_timings(lp[None], TOKENIZER.encode("ab"), SPACE, FRAME)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input(dtype):
    frames = "__hh_e_ll_l_oo__ ___w_orr_l_d____"
    full = align(frames, "hello world")
    low = align(frames, "hello world", log_probs=peaked_log_probs(frames).to(dtype))
    assert_within_one_frame(low, frames)
    assert [(w.word, w.start, w.end) for w in low] == [(w.word, w.start, w.end) for w in full]
    for a, b in zip(low, full, strict=True):
        assert a.confidence == pytest.approx(b.confidence, abs=0.01)


def test_non_zero_blank_and_no_tokens():
    a, b = TOKENIZER.encode("ab")
    # Swap the columns of the blank (0) and "a", so the blank is id `a` and "a" is id 0.
    perm = list(range(TOKENIZER.vocab_size))
    perm[0], perm[a] = a, 0
    lp = peaked_log_probs("_a_ _b_")[:, perm]
    words = word_timings(lp, [0, SPACE, b], SPACE, FRAME, blank=a)
    assert [(w.word, w.start, w.end) for w in words] == [
        ("<0>", pytest.approx(FRAME), pytest.approx(2 * FRAME)),
        (f"<{b}>", pytest.approx(5 * FRAME), pytest.approx(6 * FRAME)),
    ]


# --- path_word_timings: words where a decoder's frame path emitted them ---------------------


def frame_path(frames: str) -> list[int]:
    return [0 if c == "_" else TOKENIZER.encode(c.lower())[0] for c in frames]


def test_path_words_are_timed_where_the_path_emits_them():
    frames = "  __go__  _ _on___ "  # leading, doubled and trailing spaces
    words = path_word_timings(
        peaked_log_probs(frames), frame_path(frames), SPACE, FRAME, tokens=TOKENIZER.tokens
    )
    assert_within_one_frame(words, frames)
    assert [(w.start, w.end) for w in words] == [
        (pytest.approx(4 * FRAME), pytest.approx(6 * FRAME)),
        (pytest.approx(13 * FRAME), pytest.approx(15 * FRAME)),
    ]


def test_path_repeats_held_and_split_by_a_blank():
    frames = "_tt_oo_o_"  # "t" held for two frames, then two "o"s split by a blank
    (word,) = path_word_timings(
        peaked_log_probs(frames), frame_path(frames), SPACE, FRAME, tokens=TOKENIZER.tokens
    )
    assert (word.word, word.start, word.end) == (
        "too",
        pytest.approx(FRAME),
        pytest.approx(8 * FRAME),
    )


def test_path_confidence_from_the_emitting_frames():
    frames = "_sure_ _MAYBE_"
    sure, maybe = path_word_timings(peaked_log_probs(frames), frame_path(frames), SPACE, FRAME)
    assert sure.confidence == pytest.approx(0.9, abs=1e-4)
    assert maybe.confidence == pytest.approx(0.1, abs=1e-4)
    assert sure.word == "".join(f"<{i}>" for i in TOKENIZER.encode("sure"))


def test_path_of_another_length_raises():
    with pytest.raises(ValueError, match="path has 3 frames, log_probs 4"):
        path_word_timings(peaked_log_probs("_ab_"), [0, 1, 0], SPACE, FRAME)
