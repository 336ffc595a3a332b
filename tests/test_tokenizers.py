"""Output units: character, phone and SentencePiece BPE tokenizers, saved in checkpoints,
trained and decoded (greedy and lexicon beam search) end to end on the tone corpus."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from asr.checkpoint import load_checkpoint
from asr.config import load_config
from asr.data import read_manifest, write_manifest
from asr.decoding.beam import BeamConfig, BeamSearchDecoder, DecoderError
from asr.tokenizers import (
    BLANK,
    BpeTokenizer,
    CharTokenizer,
    PhoneTokenizer,
    TokenizerError,
    build_tokenizer,
    tokenizer_from_state,
)
from asr.train import train
from asr.transcribe import Transcriber
from tests.conftest import tiny_overrides

needs_sentencepiece = pytest.mark.skipif(
    importlib.util.find_spec("sentencepiece") is None,
    reason="sentencepiece (the bpe extra) is not installed",
)

SENTENCES = [
    "the cat sat on the mat",
    "a dog sat on a log",
    "the dog and the cat ran",
    "über straße café",  # non-ASCII letters are units like any other
]


CHAR_SENTENCES = ["hello world", "it's a test", "the quick brown fox", "zebra"]


def test_blank_is_id_zero():
    tok = CharTokenizer.from_texts(CHAR_SENTENCES)
    assert tok.tokens[0] == BLANK
    assert " " in tok.tokens[1:]  # the space is an ordinary token
    assert 0 not in tok.encode(" ".join(CHAR_SENTENCES))


def test_from_texts_vocabulary_is_sorted_and_unique():
    tok = CharTokenizer.from_texts(["cab", "bad a"])
    assert tok.tokens == [BLANK, " ", "a", "b", "c", "d"]
    assert tok.vocab_size == 6


def test_encode_gives_exact_ids():
    tok = CharTokenizer.from_texts(["cab", "bad a"])
    assert tok.encode("bad cab") == [3, 2, 5, 1, 4, 2, 3]


@pytest.mark.parametrize("text", CHAR_SENTENCES)
def test_encode_decode_round_trip(text):
    tok = CharTokenizer.from_texts(CHAR_SENTENCES)
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert tok.decode(ids) == text


def test_decode_drops_blanks():
    tok = CharTokenizer(["a", "b"])
    assert tok.decode([0, 1, 0, 2, 0]) == "ab"


def test_unknown_characters_are_listed():
    tok = CharTokenizer.from_texts(["abc"])
    with pytest.raises(TokenizerError) as err:
        tok.encode("abxzy!")
    message = str(err.value)
    for c in "xyz!":
        assert c in message
    assert tok.unknown_chars("abxzy!") == {"x", "y", "z", "!"}


def test_duplicate_characters_are_rejected():
    with pytest.raises(ValueError, match="unique"):
        CharTokenizer(["a", "b", "a"])


def test_state_dict_round_trip():
    tok = CharTokenizer.from_texts(CHAR_SENTENCES)
    state = tok.state_dict()
    assert state["type"] == "char"
    again = CharTokenizer.from_state_dict(state)
    assert again.tokens == tok.tokens
    for text in CHAR_SENTENCES:
        assert again.encode(text) == tok.encode(text)


@needs_sentencepiece
def test_bpe_round_trips_and_refuses_unknown_characters():
    tok = BpeTokenizer.train(SENTENCES * 5, vocab_size=40)
    assert tok.tokens[0] == "<blank>" and len(tok.tokens) <= 41
    for text in [*SENTENCES, "the mat ran", "a cat"]:
        ids = tok.encode(text)
        assert 0 not in ids  # the blank is never a target
        assert tok.decode(ids) == text
    # pieces mark word starts: a word is spelt in pieces that decode back to it
    spelling = tok.spell("straße")
    assert spelling[0].startswith("▁") and "".join(spelling).lstrip("▁") == "straße"
    with pytest.raises(TokenizerError, match="characters outside the vocabulary: 'qx'"):
        tok.encode("the qat x")
    assert tok.unknown("the qat x") == {"q", "x"} and tok.spell("qat") is None
    assert tok.unknown("the cat") == set()


@needs_sentencepiece
def test_bpe_training_is_deterministic_and_model_files_load(tmp_path: Path):
    a = BpeTokenizer.train(SENTENCES, vocab_size=30)
    b = BpeTokenizer.train(SENTENCES, vocab_size=30)
    assert a.tokens == b.tokens and a.model_proto == b.model_proto
    (tmp_path / "bpe.model").write_bytes(a.model_proto)
    c = build_tokenizer("bpe", [], bpe_model=str(tmp_path / "bpe.model"))
    assert c.tokens == a.tokens
    (tmp_path / "junk.model").write_bytes(b"not a model")
    with pytest.raises(TokenizerError, match=r"junk\.model: not a SentencePiece model"):
        BpeTokenizer.from_file(tmp_path / "junk.model")


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: CharTokenizer.from_texts(SENTENCES), id="char"),
        pytest.param(
            lambda: PhoneTokenizer.from_texts(["sil dh ax k ae t sil", "d ao g"]), id="phone"
        ),
        pytest.param(
            lambda: BpeTokenizer.train(SENTENCES, vocab_size=30),
            id="bpe",
            marks=needs_sentencepiece,
        ),
    ],
)
def test_every_tokenizer_survives_a_weights_only_checkpoint(make, tmp_path: Path):
    tok = make()
    torch.save({"tokenizer": tok.state_dict()}, tmp_path / "t.pt")
    state = torch.load(tmp_path / "t.pt", weights_only=True)["tokenizer"]
    back = tokenizer_from_state(state)
    assert type(back) is type(tok) and back.tokens == tok.tokens


def test_phone_units_are_whole_tokens():
    tok = PhoneTokenizer.from_texts(["sil ae sil", "aa ae"])
    assert tok.encode(" aa  ae ") == tok.encode("aa ae")  # any whitespace separates
    assert tok.spell("ae") == ["ae"] and tok.spell("a") is None and tok.spell("<blank>") is None
    assert tok.unknown("aa zz ae yy") == {"yy", "zz"}
    with pytest.raises(ValueError, match="unique"):
        PhoneTokenizer(["aa", "aa"])


def test_unknown_units_name_is_refused():
    with pytest.raises(ValueError, match="units must be one of char, phone, bpe, not 'word'"):
        build_tokenizer("word", ["a"])


def write_flat_arpa(words: list[str], path: Path) -> Path:
    """A bigram ARPA LM (KenLM needs order 2 or more) in which every word and </s> has the same
    probability whatever came before: it ranks no word above another."""
    logp = f"{-math.log10(len(words) + 1):.6f}"
    unigrams = [f"{logp}\t{w}\t0" for w in words] + [f"{logp}\t</s>", "-99\t<s>\t0", "-99\t<unk>"]
    lines = ["\\data\\", f"ngram 1={len(unigrams)}", "ngram 2=1", "", "\\1-grams:", *unigrams]
    lines += ["", "\\2-grams:", f"{logp}\t<s> {words[0]}", "", "\\end\\", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def relabel(manifest: Path, out: Path, to_text) -> Path:
    """A copy of the tone manifest with each text rewritten by `to_text`."""
    utts = read_manifest(manifest)
    for u in utts:
        u.text = to_text(u.text)
    write_manifest(out, utts, relative=False)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("units", ["phone", pytest.param("bpe", marks=needs_sentencepiece)])
def test_model_with_units_learns_and_decodes_back(units: str, tone_manifest: Path, tmp_path):
    """A tiny model with phone or BPE units overfits the tone corpus; greedy and lexicon beam
    search give the texts back, and the checkpoint carries its tokenizer."""
    if units == "phone":
        # each tone a phone, the long pause a "sil" phone
        manifest = relabel(
            tone_manifest,
            tmp_path / "phones.jsonl",
            lambda t: " ".join("sil" if c == " " else c for c in t),
        )
    else:
        manifest = tone_manifest
    cfg = load_config(
        None,
        [
            *tiny_overrides(manifest),
            f"data.units={units}",
            "data.bpe_vocab_size=8",
            "train.epochs=80",
            "train.validate_every_epochs=10",
            "train.spec_augment=false",
        ],
    )
    train(cfg, tmp_path / "exp")
    state = load_checkpoint(tmp_path / "exp" / "best.pt")
    assert state["tokenizer"]["type"] == units
    transcriber = Transcriber.from_state(state, device="cpu")
    utts = read_manifest(manifest)
    texts = [" ".join(u.text.split()) for u in utts]
    greedy = [transcriber.transcribe(u.audio_filepath) for u in utts]
    assert sum(g == t for g, t in zip(greedy, texts, strict=True)) >= len(utts) - 1, greedy
    words = sorted({w for t in texts for w in t.split()})
    if units == "bpe":  # lexicon beam search: words spelt in BPE pieces
        decoder = BeamSearchDecoder(transcriber.tokenizer, BeamConfig(beam_size=8), words)
        assert not decoder.dropped_words
    else:  # phones are the words: beam search with a phone LM, no lexicon
        with pytest.raises(DecoderError, match="a phone model's units are its words"):
            BeamSearchDecoder(transcriber.tokenizer, BeamConfig(), words)
        lm = write_flat_arpa(words, tmp_path / "phones.arpa")
        decoder = BeamSearchDecoder(transcriber.tokenizer, BeamConfig(beam_size=8), lm=lm)
    transcriber.decoder = decoder
    beam = [transcriber.transcribe(u.audio_filepath) for u in utts]
    assert sum(b == t for b, t in zip(beam, texts, strict=True)) >= len(utts) - 1, beam
    config = json.loads(json.dumps(state["config"]))
    assert config["data"]["units"] == units


@needs_sentencepiece
def test_bpe_lexicon_search_reads_pieces_repeated_or_not():
    tok = BpeTokenizer.train(SENTENCES[:3] * 3, vocab_size=30)
    words = ["the", "cat", "sat", "on", "mat", "a", "dog", "log", "and", "ran"]
    decoder = BeamSearchDecoder(tok, BeamConfig(beam_size=16), words=words)
    ids = tok.encode("the cat sat on the mat")
    peaky = [x for i in ids for x in (i, 0)]  # each piece one frame, then a blank
    repeated = [x for i in ids for x in (i, i, i, 0)]  # pieces held for three frames
    for frames in (peaky, repeated):
        log_probs = torch.full((1, len(frames), tok.vocab_size), -10.0)  # (B, T, V)
        log_probs[0, torch.arange(len(frames)), frames] = 0.0
        (best, *_), *_ = decoder.decode(log_probs, torch.tensor([len(frames)]))
        assert best.text == "the cat sat on the mat"
