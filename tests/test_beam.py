"""Beam search (flashlight-text via torchaudio) on hand-built log-probabilities."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from asr.decoding.beam import BeamConfig, BeamSearchDecoder, DecoderError, read_word_list
from asr.decoding.greedy import ctc_greedy_decode
from asr.tokenizers import CharTokenizer

TOK = CharTokenizer(sorted(set("abcdefghijklmnopqrstuvwxyz' ")))


def write_char_arpa(path: Path, bigrams: dict[tuple[str, str], float]) -> Path:
    """A character LM over flashlight's token names: uniform unigrams (log10 -1, back-off 0)
    plus the given bigram log10 probabilities. Unnormalised, which the decoder does not mind."""
    names = ["|", *(t for t in TOK.tokens[1:] if t != " ")]
    unigrams = ["<s>", "</s>", "<unk>", *names]
    lines = [
        "",
        "\\data\\",
        f"ngram 1={len(unigrams)}",
        f"ngram 2={len(bigrams)}",
        "",
        "\\1-grams:",
    ]
    lines += [f"{-99 if w == '<s>' else -1.0}\t{w}\t0" for w in unigrams]
    lines += ["", "\\2-grams:"]
    lines += [f"{p}\t{a} {b}" for (a, b), p in bigrams.items()]
    lines += ["", "\\end\\", ""]
    path.write_text("\n".join(lines))
    return path


def frames(*dists: dict[str, float]) -> torch.Tensor:
    """(1, T, V) log-probs: each frame's listed characters get their probability, the
    rest of the mass goes to the blank ("-" in the dicts is the blank)."""
    lp = torch.full((1, len(dists), TOK.vocab_size), 1e-6)
    for t, dist in enumerate(dists):
        for ch, p in dist.items():
            lp[0, t, 0 if ch == "-" else TOK.tokens.index(ch)] = p
        lp[0, t, 0] += max(0.0, 1.0 - sum(p for c, p in dist.items() if c != "-"))
    return (lp / lp.sum(-1, keepdim=True)).log()


def test_beam_of_one_without_lm_weight_equals_greedy(tmp_path: Path):
    lm = write_char_arpa(tmp_path / "char.arpa", {})
    torch.manual_seed(0)
    log_probs = (3 * torch.randn(4, 50, TOK.vocab_size)).log_softmax(-1)
    lengths = torch.tensor([50, 41, 30, 7])
    greedy = [" ".join(TOK.decode(ids).split()) for ids in ctc_greedy_decode(log_probs, lengths)]
    decoder = BeamSearchDecoder(TOK, BeamConfig(beam_size=1, lm_weight=0.0), lm=lm)
    beam = [hyps[0].text for hyps in decoder.decode(log_probs, lengths)]
    assert beam == greedy


def test_lm_turns_acoustically_likelier_non_word_into_the_word(tmp_path: Path):
    # Acoustics slightly prefer "teh"; a character LM that knows "t h e" makes it "the".
    log_probs = frames({"t": 0.9}, {"-": 1}, {"e": 0.55, "h": 0.45}, {"-": 1},
                       {"h": 0.55, "e": 0.45}, {"-": 1})  # fmt: skip
    lengths = torch.tensor([6])
    assert TOK.decode(ctc_greedy_decode(log_probs, lengths)[0]) == "teh"
    lm = write_char_arpa(
        tmp_path / "char.arpa", {("<s>", "t"): -0.1, ("t", "h"): -0.05, ("h", "e"): -0.05}
    )
    with_lm = BeamSearchDecoder(TOK, BeamConfig(beam_size=16, lm_weight=1.0), lm=lm)
    assert with_lm.decode(log_probs, lengths)[0][0].text == "the"
    no_weight = BeamSearchDecoder(TOK, BeamConfig(beam_size=16, lm_weight=0.0), lm=lm)
    assert no_weight.decode(log_probs, lengths)[0][0].text == "teh"


def test_lexicon_constrains_output_to_its_words():
    # Acoustics say "tha cat"; only "the" and "cat" exist.
    log_probs = frames({"t": 0.9}, {"h": 0.9}, {"a": 0.6, "e": 0.4}, {" ": 0.9},
                       {"c": 0.9}, {"a": 0.9}, {"t": 0.9})  # fmt: skip
    decoder = BeamSearchDecoder(TOK, BeamConfig(beam_size=8, nbest=5), words=["the", "cat"])
    hyps = decoder.decode(log_probs, torch.tensor([7]))[0]
    assert hyps[0].text == "the cat"
    assert hyps[0].token_ids == TOK.encode("the cat")
    texts = [h.text for h in hyps]
    assert len(texts) == len(set(texts))  # n-best texts are distinct
    assert all(a.score >= b.score for a, b in itertools.pairwise(hyps))


def test_word_bonus_trades_deletions_against_insertions():
    # One clear word, then a weak "a" barely above the blank.
    log_probs = frames({"c": 0.9}, {"a": 0.9}, {"t": 0.9}, {" ": 0.3}, {"a": 0.3})
    lengths = torch.tensor([5])

    def best(word_score: float) -> str:
        cfg = BeamConfig(beam_size=8, word_score=word_score)
        return BeamSearchDecoder(TOK, cfg, words=["cat", "a"]).decode(log_probs, lengths)[0][0].text

    assert best(-5.0) == "cat"
    assert best(5.0) == "cat a"


def test_refuses_what_would_not_be_beam_search_or_cannot_load(tmp_path: Path):
    with pytest.raises(DecoderError, match="lexicon or a language model"):
        BeamSearchDecoder(TOK, BeamConfig())
    with pytest.raises(DecoderError, match="no such language model"):
        BeamSearchDecoder(TOK, BeamConfig(), lm=tmp_path / "missing.arpa")
    bad = tmp_path / "bad.arpa"
    bad.write_text("this is not an n-gram model\n")
    with pytest.raises(DecoderError, match=str(bad)):
        BeamSearchDecoder(TOK, BeamConfig(), lm=bad)
    with pytest.raises(DecoderError, match="none of the lexicon's words"):
        BeamSearchDecoder(TOK, BeamConfig(), words=["ÆØÅ", "42"])


def test_unspellable_words_are_reported_not_silently_used():
    decoder = BeamSearchDecoder(TOK, BeamConfig(), words=["one", "zwölf", "two"])
    assert decoder.dropped_words == ["zwölf"]


def test_read_word_list_takes_first_column_normalised(tmp_path: Path):
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("One\to n e |\n\nTWO t w o\nzero\n")
    assert read_word_list(lexicon) == ["one", "two", "zero"]
    with pytest.raises(DecoderError, match="no such lexicon"):
        read_word_list(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(DecoderError, match="has no words"):
        read_word_list(empty)


def test_scores_are_finite_log_domain():
    log_probs = frames({"a": 0.9})
    hyp = BeamSearchDecoder(TOK, BeamConfig(), words=["a"]).decode(log_probs, torch.tensor([1]))
    assert math.isfinite(hyp[0][0].score) and hyp[0][0].score <= 0


# "seven" then a space as a trained synthetic-speech model gave them: characters held for
# several frames. Lexicon spellings without a final separator turned this into "seven one".
SEVEN = [{"s": 1.0}, {"s": 0.92}, {"-": 1}, {"-": 1}, {"e": 0.53}, {"e": 1.0},
         {"e": 0.62, "v": 0.38}, {"v": 1.0}, {"v": 0.98, "e": 0.02}, {"e": 0.99}, {"e": 1.0},
         {"e": 0.55, "n": 0.42}, {"n": 1.0}, {"n": 1.0}, {"n": 1.0}, {"n": 1.0}, {"n": 0.77},
         {"-": 0.77, " ": 0.21}, {" ": 1.0}, {" ": 1.0}]  # fmt: skip
ONE = [{"o": 0.9}, {"o": 0.9}, {"n": 0.9}, {"n": 0.9}, {"e": 0.9}, {"-": 1}, {" ": 0.9}]


def test_words_held_for_many_frames_do_not_grow_extra_words():
    decoder = BeamSearchDecoder(TOK, BeamConfig(beam_size=16), words=["seven", "one", "two"])
    cases = {
        "seven": frames(*SEVEN[:-3]),  # the last word: no space after it
        "seven seven": frames(*SEVEN, *SEVEN[:-3]),
        "seven one seven": frames(*SEVEN, *ONE, *SEVEN[:-3]),
    }
    for text, log_probs in cases.items():
        length = torch.tensor([log_probs.shape[1]])
        assert decoder.decode(log_probs, length)[0][0].text == text
    # A padded batch: the shorter utterance's last word completes at its own length.
    long, short = cases["seven one seven"], cases["seven"]
    pad = long[:, : long.shape[1] - short.shape[1]]
    batch = torch.cat([long, torch.cat([short, pad], dim=1)])
    hyps = decoder.decode(batch, torch.tensor([long.shape[1], short.shape[1]]))
    assert [h[0].text for h in hyps] == ["seven one seven", "seven"]


def test_model_without_space_token_decodes_single_words():
    # A model trained on isolated words (FSDD) has no space token.
    tok = CharTokenizer(list("eno"))  # ids: blank 0, e 1, n 2, o 3
    log_probs = torch.full((1, 5, 4), 1e-3)
    for t, i in enumerate([3, 0, 2, 1, 1]):  # "o", blank, "n", "e", "e": greedy "one"
        log_probs[0, t, i] = 1.0
    log_probs = (log_probs / log_probs.sum(-1, keepdim=True)).log()
    decoder = BeamSearchDecoder(tok, BeamConfig(beam_size=8), words=["one", "neon"])
    (hyp,) = decoder.decode(log_probs, torch.tensor([5]))[0][:1]
    assert hyp.text == "one" and hyp.token_ids == tok.encode("one")


def _lm_folder(folder: Path, recorded_bytes: int | None) -> Path:
    """An LM folder's files as `asr lm build` leaves them (contents beside the point here)."""
    import json

    from asr.files import file_sha256

    folder.mkdir()
    for name in ("lm.arpa", "lexicon.txt"):
        (folder / name).write_text("x\n")
    (folder / "lm.bin").write_bytes(b"kenlm binary " * 10)
    info = {"unit": "word", "order": 2, "lm_bin_sha256": file_sha256(folder / "lm.bin")}
    if recorded_bytes is not None:
        info["lm_bin_bytes"] = recorded_bytes
    (folder / "lm.json").write_text(json.dumps(info))
    return folder


def test_lm_folder_with_a_missing_or_mismatched_binary_is_named(tmp_path: Path):
    from asr.decoding.choose import resolve_lm
    from asr.lm import LMError

    good = _lm_folder(tmp_path / "good", 130)
    assert resolve_lm(good, None).lm == good / "lm.bin"
    (good / "lm.bin").write_bytes(b"another model")
    with pytest.raises(DecoderError, match=r"lm\.bin: not the model this LM folder was built with"):
        resolve_lm(good, None)
    old = _lm_folder(tmp_path / "old", None)  # built before sizes were recorded: hashed
    assert resolve_lm(old, None).lm == old / "lm.bin"
    (old / "lm.bin").write_bytes(b"kenlm binarY " * 10)
    with pytest.raises(DecoderError, match="its sha256 differs"):
        resolve_lm(old, None)
    (old / "lm.bin").unlink()
    with pytest.raises(LMError, match=r"incomplete LM folder, lm\.bin is missing"):
        resolve_lm(old, None)


def test_lexicon_the_model_cannot_spell_names_the_file(tmp_path: Path):
    from asr.decoding.choose import LMChoice, make_decoder

    lexicon = tmp_path / "words.txt"
    lexicon.write_text("ÆØÅ\n42\n")
    with pytest.raises(DecoderError) as err:
        make_decoder(TOK, LMChoice(None, lexicon, None), tuned=[])
    assert str(err.value).startswith(f"{lexicon}: none of its 2 words can be spelt")
    assert "'24åæø'" in str(err.value)
