"""Spelt words as LM text (`asr.spelling`, `asr lm build --spell`): the word-list reader, the
pocketsphinx dictionary, the LM they make and what it does to a beam search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from asr import spelling
from asr.decoding.beam import BeamConfig, BeamSearchDecoder
from asr.lm import ArpaModel, LMError, build_lm, kenlm_tools
from asr.spelling import SpellingError, spellable_words, word_list_path
from asr.tokenizers import CharTokenizer

# The CMU Pronouncing Dictionary's own format: comments, a second pronunciation "(2)", words
# with an apostrophe or a digit, single letters, upper case.
CMUDICT_LINES = """\
;;; a comment line
MELVIN M EH1 L V IH0 N
melvin(2) M EH1 L V AH0 N
nelson N EH1 L S AH0 N
o'brien OW0 B R AY1 AH0 N
3d TH R IY1 D IY1
m EH1 M

cindy S IH1 N D IY0
"""


def cmudict_file(path: Path, text: str = CMUDICT_LINES) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_word_list_keeps_each_spellable_word_once_in_file_order(tmp_path: Path) -> None:
    words = spellable_words(cmudict_file(tmp_path / "words.dict"))
    assert words == ["melvin", "nelson", "cindy"]
    plain = tmp_path / "plain.txt"
    plain.write_text("Kaufman\nginsberg extra columns\n", encoding="utf-8")
    assert spellable_words(plain) == ["kaufman", "ginsberg"]


def test_bad_word_lists_name_the_file_and_cause(tmp_path: Path) -> None:
    broken = tmp_path / "broken.dict"
    broken.write_bytes(b"melvin M EH1 L V IH0 N\nbad \xff\xfe word\n")
    with pytest.raises(SpellingError, match=r"broken\.dict:2: not UTF-8 text"):
        spellable_words(broken)
    letters = cmudict_file(tmp_path / "letters.txt", "a\nb\no'k\n;;; melvin\n")
    with pytest.raises(SpellingError, match=r"letters\.txt: no word of two or more letters"):
        spellable_words(letters)
    with pytest.raises(SpellingError, match=r"none\.txt: no such word list"):
        word_list_path(tmp_path / "none.txt")
    with pytest.raises(SpellingError, match=r": a word list must be a file, not a folder"):
        word_list_path(tmp_path)


def test_cmudict_without_pocketsphinx_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(spelling, "find_spec", lambda name: None)
    with pytest.raises(SpellingError, match=r"^cmudict: the pocketsphinx package is not installed"):
        word_list_path("cmudict")


def test_cmudict_is_pocketsphinx_copy_of_the_cmu_dictionary() -> None:
    pytest.importorskip("pocketsphinx", reason="pocketsphinx not installed (the spell extra)")
    path = word_list_path("cmudict")
    assert path.name == "cmudict-en-us.dict" and path.parent.parent.name == "model"
    words = spellable_words(path)
    assert len(words) > 100_000  # 134,860 lines in pocketsphinx 5.1.1, 117,469 spellable words
    assert {"melvin", "cindy", "pittsburgh", "november"} <= set(words)
    assert all(w.isascii() and w.isalpha() and len(w) >= 2 for w in words)


@pytest.mark.slow
def test_lm_learns_spelling_and_text_copies_weigh_the_transcripts(tmp_path: Path) -> None:
    tools = kenlm_tools()
    text = tmp_path / "train.txt"
    text.write_text("enter one\nrubout m n\n", encoding="utf-8")
    words = cmudict_file(tmp_path / "words.dict")
    plain = build_lm(text, tmp_path / "plain", order=3, tools=tools)
    spelt = build_lm(text, tmp_path / "spelt", order=3, tools=tools, spell=words)
    heavy = build_lm(text, tmp_path / "heavy", order=3, tools=tools, spell=words, text_copies=20)

    # The spellings' letters become words of the lexicon ("c" of "cindy" was in no transcript).
    assert "c" not in plain.lexicon.read_text().split()
    assert "c\tc |" in spelt.lexicon.read_text().splitlines()
    # "m e l v i n": after "m" at a sentence's start comes "e", which the transcripts alone
    # ("rubout m n") never say.
    arpa = ArpaModel(spelt.arpa)
    plain_arpa = ArpaModel(plain.arpa)
    assert arpa.log10_prob("e", ("<s>", "m")) > plain_arpa.log10_prob("e", ("<s>", "m")) + 0.5
    assert arpa.log10_prob("l", ("m", "e")) > plain_arpa.log10_prob("l", ("m", "e")) + 0.5
    # Counted 20 times, the transcripts' own sentence starts gain back their weight.
    heavy_arpa = ArpaModel(heavy.arpa)
    assert heavy_arpa.log10_prob("enter", ("<s>",)) > arpa.log10_prob("enter", ("<s>",)) + 0.5
    info = json.loads((tmp_path / "heavy" / "lm.json").read_text())
    assert info["text_copies"] == 20 and info["sentences"] == 2
    assert info["spell"]["words"] == 3 and info["spell"]["word_list"] == str(words.resolve())
    assert info["command"].endswith(f"--spell {words} --text-copies 20")
    assert json.loads((tmp_path / "plain" / "lm.json").read_text())["spell"] is None
    with pytest.raises(LMError, match="--text-copies must be 1 or more, got 0"):
        build_lm(text, tmp_path / "zero", tools=tools, spell=words, text_copies=0)


@pytest.mark.slow
def test_lm_json_command_rebuilds_the_same_lm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = kenlm_tools()
    text = tmp_path / "train.txt"
    text.write_text("enter one\n", encoding="utf-8")
    words = cmudict_file(tmp_path / "words.dict")
    monkeypatch.setattr(spelling, "cmudict_path", lambda: words)  # pocketsphinx's, here a fixture
    build_lm(text, tmp_path / "named", order=2, tools=tools, spell="cmudict")
    info = json.loads((tmp_path / "named" / "lm.json").read_text())
    assert info["command"].endswith("--unit word --spell cmudict")  # the name, not the path
    assert info["spell"]["word_list"] == str(words.resolve())
    build_lm(text, tmp_path / "copies", order=2, tools=tools, text_copies=3)
    info = json.loads((tmp_path / "copies" / "lm.json").read_text())
    assert info["command"].endswith("--unit word --text-copies 3") and info["spell"] is None
    with pytest.raises(LMError, match=r"none\.dict: no such word list"):
        build_lm(text, tmp_path / "bad", tools=tools, spell=tmp_path / "none.dict")


@pytest.mark.slow
def test_spelt_word_lm_turns_a_heard_n_into_the_m_of_a_name(tmp_path: Path) -> None:
    # The acoustics of "m e l v i n", spelt, hear "n" a little more than "m" first.
    tok = CharTokenizer(sorted(set("abcdefghijklmnopqrstuvwxyz ")))
    letters = [{"n": 0.5, "m": 0.4}, *({c: 0.9} for c in "elvin")]
    frames = [f for dist in letters for f in (dist, {" ": 0.9})]
    log_probs = torch.full((1, len(frames), tok.vocab_size), 1e-4)
    for t, dist in enumerate(frames):
        for ch, p in dist.items():
            log_probs[0, t, tok.tokens.index(ch)] = p
        log_probs[0, t, 0] = max(1e-4, 1.0 - sum(dist.values()))
    log_probs = (log_probs / log_probs.sum(-1, keepdim=True)).log()
    lengths = torch.tensor([len(frames)])

    text = tmp_path / "train.txt"
    text.write_text("rubout m n\nenter one\n", encoding="utf-8")
    words = cmudict_file(tmp_path / "words.dict")
    cfg = BeamConfig(beam_size=16, lm_weight=1.0)
    lexicon = ["rubout", "enter", "one", *"melvinsocdy"]
    plain = build_lm(text, tmp_path / "plain", order=4, spell=None)
    spelt = build_lm(text, tmp_path / "spelt", order=4, spell=words, text_copies=1)
    heard = BeamSearchDecoder(tok, cfg, lm=plain.binary, words=lexicon)
    assert heard.decode(log_probs, lengths)[0][0].text == "n e l v i n"
    named = BeamSearchDecoder(tok, cfg, lm=spelt.binary, words=lexicon)
    assert named.decode(log_probs, lengths)[0][0].text == "m e l v i n"


@pytest.mark.slow
def test_asr_lm_build_spell_reports_the_spellings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from asr.cli import main

    text = tmp_path / "train.txt"
    text.write_text("enter one\n", encoding="utf-8")
    words = cmudict_file(tmp_path / "words.dict")
    out = tmp_path / "lm"
    args = ["lm", "build", "--text", str(text), "--order", "3", "--out", str(out)]
    assert main([*args, "--spell", str(words), "--text-copies", "5"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (
        f"3-gram word LM of 1 sentences (x5) and 3 spelt words of {words.resolve()}, "
        "vocabulary 13"  # enter, one and the 11 letters of melvin, nelson, cindy
    )


def test_asr_lm_build_refuses_a_bad_word_list_before_building_kenlm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from asr.cli import main

    text = tmp_path / "train.txt"
    text.write_text("enter one\n", encoding="utf-8")
    missing = tmp_path / "none.dict"
    args = ["lm", "build", "--text", str(text), "--out", str(tmp_path / "lm")]
    assert main([*args, "--spell", str(missing)]) == 1
    assert capsys.readouterr().err == f"asr: error: {missing}: no such word list\n"
    assert not (tmp_path / "lm").exists()
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error, exit 2
        main([*args, "--spell", str(missing), "--text-copies", "0"])
    assert exit_info.value.code == 2
    assert "--text-copies: must be 1 or more, got 0" in capsys.readouterr().err
    assert not (tmp_path / "lm").exists()


def test_asr_lm_words_counts_a_word_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from asr.cli import main

    words = cmudict_file(tmp_path / "words.dict")
    assert main(["lm", "words", str(words)]) == 0
    assert capsys.readouterr().out == f"3 words of two or more letters a-z in {words}\n"
    monkeypatch.setattr(spelling, "find_spec", lambda name: None)
    assert main(["lm", "words", "cmudict"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("asr: error: cmudict: the pocketsphinx package is not installed")
    assert err.count("\n") == 1
