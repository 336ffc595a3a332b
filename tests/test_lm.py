"""N-gram LMs: KenLM builds normalised models that KenLM itself (via flashlight-text) loads."""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from asr.files import file_sha256
from asr.lm import (
    KENLM_DEBS,
    ArpaModel,
    KenLMTools,
    LMError,
    build_lm,
    kenlm_build_problems,
    kenlm_tools,
    load_lm_files,
    to_lm_units,
)

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
EXTRA = ["oh", "double", "call", "me", "at", "it's"]


@pytest.fixture(scope="session")
def tools() -> KenLMTools:
    """KenLM from PATH or the default cache; the first run on a machine builds it (~2 min)."""
    return kenlm_tools()


def digit_text(path: Path, lines: int = 300, seed: int = 0) -> Path:
    """Digit strings, some led by a few other words: a corpus with seen and unseen n-grams."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(DIGITS) for _ in range(rng.randint(1, 6))]
        if rng.random() < 0.3:
            words = [rng.choice(EXTRA), *words]
        out.append(" ".join(words).capitalize() + ("." if rng.random() < 0.5 else ""))
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def word_lm(tools: KenLMTools, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("word-lm")
    text = digit_text(folder / "text.txt")
    return text, build_lm(text, folder / "lm", order=3, tools=tools)


@pytest.mark.slow
def test_probabilities_sum_to_one_for_seen_and_unseen_histories(word_lm) -> None:
    text, files = word_lm
    arpa = ArpaModel(files.arpa)
    assert arpa.order == 3
    assert {"<s>", "</s>", "<unk>", *DIGITS, *EXTRA} == arpa.vocab
    predicted = sorted(arpa.vocab - {"<s>"})  # <s> is never predicted; </s> and <unk> are

    rng = random.Random(1)
    sentences = [["<s>", *line.split()] for line in text.read_text().lower().splitlines()]
    words = [*sorted(arpa.vocab - {"</s>"}), "zebra"]  # zebra: outside the vocabulary
    histories: list[tuple[str, ...]] = [()]
    histories += [(w,) for w in rng.sample(words, 12)]
    for _ in range(19):  # seen bigram histories, <s> ones included
        s = rng.choice([s for s in sentences if len(s) > 2])
        i = rng.randrange(len(s) - 1)
        histories.append((s[i], s[i + 1].strip(".")))
    histories += [tuple(rng.sample(words, 2)) for _ in range(18)]  # mostly unseen
    assert any(h not in arpa.ngrams for h in histories if len(h) == 2), "no back-off tested"
    assert any(h in arpa.ngrams for h in histories if len(h) == 2)

    for history in histories:
        total = sum(10 ** arpa.log10_prob(w, history) for w in predicted)
        assert total == pytest.approx(1.0, abs=1e-3), history


@pytest.mark.slow
def test_kenlm_loads_binary_and_arpa_with_the_same_scores(word_lm) -> None:
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary, load_words

    _, files = word_lm
    lexicon = load_words(str(files.lexicon))  # the lexicon format flashlight's decoders read
    assert lexicon["it's"] == [["i", "t", "'", "s", "|"]]
    words = Dictionary([*sorted(lexicon), "zebra"])
    arpa = ArpaModel(files.arpa)
    sentences = [
        "one two three",
        "call me at five five five",
        "oh oh oh",
        "nine zebra two",  # an unknown word scores as <unk>
        "it's",
    ]
    for path in (files.binary, files.arpa):
        kenlm = KenLM(str(path), words)
        for sentence in sentences:
            state, total = kenlm.start(False), 0.0  # start: the history is <s>
            for word in sentence.split():
                state, score = kenlm.score(state, words.get_index(word))
                total += score
            total += kenlm.finish(state)[1]  # + log10 p(</s> | ...)
            expected = arpa.sentence_log10_prob(sentence.split())
            assert total == pytest.approx(expected, abs=1e-4), (path.name, sentence)


@pytest.mark.slow
def test_word_lm_files_lexicon_and_metadata(tools: KenLMTools, tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("Two ONE!\n\n  it’s two\n", encoding="utf-8")
    files = build_lm(text, tmp_path / "lm", order=2, tools=tools)
    assert files.lexicon is not None
    assert files.lexicon.read_text(encoding="utf-8") == (
        "it's\ti t ' s |\none\to n e |\ntwo\tt w o |\n"
    )
    assert load_lm_files(tmp_path / "lm") == files
    info = json.loads((tmp_path / "lm" / "lm.json").read_text())
    assert (info["unit"], info["order"], info["sentences"], info["words"]) == ("word", 2, 2, 4)
    assert info["vocab_size"] == 3
    assert info["text"] == [str(text.resolve())]
    assert info["lm_bin_sha256"] == file_sha256(files.binary)
    assert info["command"].startswith("asr lm build --text ")
    # Several texts, read one after the other: a word list adds its words to the lexicon.
    words = tmp_path / "words.txt"
    words.write_text("three\none\n", encoding="utf-8")
    more = build_lm([text, words], tmp_path / "lm2", order=2, tools=tools)
    assert more.lexicon.read_text(encoding="utf-8").split("\n")[2] == "three\tt h r e e |"
    info2 = json.loads((tmp_path / "lm2" / "lm.json").read_text())
    assert info2["sentences"] == 4 and info2["text"] == [str(text.resolve()), str(words.resolve())]
    assert sorted(p.name for p in (tmp_path / "lm").iterdir()) == [
        "lexicon.txt",
        "lm.arpa",
        "lm.bin",
        "lm.json",
    ]


def test_char_units_put_a_separator_between_words_only() -> None:
    assert to_lm_units("one two", "char") == "o n e | t w o"
    assert to_lm_units("it's", "char") == "i t ' s"
    assert to_lm_units("one two", "word") == "one two"
    with pytest.raises(LMError, match="phone"):
        to_lm_units("one", "phone")


@pytest.mark.slow
def test_char_lm_has_characters_and_separator_and_no_lexicon(
    tools: KenLMTools, tmp_path: Path
) -> None:
    text = tmp_path / "text.txt"
    text.write_text("One two\nthree, one\n", encoding="utf-8")
    out = tmp_path / "lm"
    out.mkdir()
    (out / "lexicon.txt").write_text("stale\ts t a l e |\n")  # from an earlier word model
    files = build_lm(text, out, order=4, unit="char", tools=tools)
    assert (files.unit, files.order, files.lexicon) == ("char", 4, None)
    assert not (out / "lexicon.txt").exists()
    arpa = ArpaModel(files.arpa)
    assert set("onetwhr|") | {"<s>", "</s>", "<unk>"} == arpa.vocab
    assert ("e", "|", "t") in arpa.ngrams  # "o n e | t w o"
    assert ("|", "</s>") not in arpa.ngrams  # no separator at the end of a sentence
    assert json.loads((out / "lm.json").read_text())["vocab_size"] == 8


def test_missing_empty_and_binary_text_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(LMError, match=r"missing\.txt: no such file"):
        build_lm(missing, tmp_path / "lm")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n...!\n")
    with pytest.raises(LMError, match=r"empty\.txt: no text"):
        build_lm(empty, tmp_path / "lm")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"one two\n\x89PNG\r\n\x1a\n\x00\xff\xfe\xc3\x28")
    with pytest.raises(LMError, match=r"garbage\.bin:2: not UTF-8"):
        build_lm(garbage, tmp_path / "lm")
    assert not (tmp_path / "lm").exists()


def test_bad_order_and_unit_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("one\n")
    with pytest.raises(LMError, match="order"):
        build_lm(text, tmp_path / "lm", order=7)
    with pytest.raises(LMError, match="unit"):
        build_lm(text, tmp_path / "lm", unit="phone")


def test_lmplz_failure_is_one_line_with_its_last_error(tmp_path: Path) -> None:
    _fake_tool(
        tmp_path, "lmplz", "echo '=== 1/5 Counting ===' >&2; echo 'ERROR: disk full' >&2; exit 1"
    )
    _fake_tool(tmp_path, "build_binary")
    text = tmp_path / "text.txt"
    text.write_text("one two\n")
    tools = KenLMTools(tmp_path / "lmplz", tmp_path / "build_binary")
    with pytest.raises(
        LMError, match=r"lmplz on \S*text\.txt failed \(exit 1\): ERROR: disk full$"
    ):
        build_lm(text, tmp_path / "lm", tools=tools)
    assert list((tmp_path / "lm").iterdir()) == []  # no model, no work folder left


def test_load_lm_files_refuses_other_folders(tmp_path: Path) -> None:
    with pytest.raises(LMError, match=f"{re.escape(str(tmp_path))}: not an LM folder"):
        load_lm_files(tmp_path)
    (tmp_path / "lm.json").write_text(json.dumps({"unit": "word", "order": 3}))
    with pytest.raises(LMError, match=r"incomplete LM folder, lm\.arpa is missing"):
        load_lm_files(tmp_path)


def test_arpa_reader_names_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=1\n\n\\1-grams:\n-1 <unk> 0 extra fields\n")
    with pytest.raises(LMError, match=r"bad\.arpa:5: not an ARPA line"):
        ArpaModel(bad)
    bad.write_text("\\data\\\nngram 1=1\n\n\\1-grams:\n-1\t<unk>\n")
    with pytest.raises(LMError, match=r"no \\end\\ line"):
        ArpaModel(bad)


def _fake_tool(folder: Path, name: str, script: str = "exit 0") -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def test_missing_build_tools_and_boost_give_one_line_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No network: the 'source release' is a stand-in archive already in the cache."""
    import asr.lm

    fake_bin, cache = tmp_path / "bin", tmp_path / "cache"
    fake_bin.mkdir()
    monkeypatch.setenv("PATH", str(fake_bin))  # no lmplz, no cmake, no compiler
    with pytest.raises(LMError, match="cmake, make, c\\+\\+ not found; install them"):
        kenlm_tools(cache)

    archive = cache / "kenlm-0.3.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"find_package(Boost REQUIRED)\n"
        info = tarfile.TarInfo("kenlm-0.3.0/CMakeLists.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(asr.lm, "KENLM_SHA256", file_sha256(archive))
    boost_error = "echo 'Could NOT find Boost (missing: program_options)' >&2; exit 1"
    _fake_tool(fake_bin, "cmake", boost_error)
    _fake_tool(fake_bin, "make")
    _fake_tool(fake_bin, "c++")
    with pytest.raises(LMError) as err:
        kenlm_tools(cache)
    message = str(err.value)
    assert "\n" not in message
    assert "Boost not found" in message
    assert "apt-get install libboost-program-options-dev" in message
    # Nothing that looks finished, and no build folder left behind.
    assert sorted(p.name for p in cache.iterdir()) == [
        ".kenlm-0.3.0.lock",
        "kenlm-0.3.0.build.log",
        "kenlm-0.3.0.tar.gz",
    ]


def test_manifest_text_is_read_from_its_text_fields(tmp_path: Path) -> None:
    from asr.data import Utterance, write_manifest
    from asr.lm import read_sentences

    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, [Utterance("a.wav", 1.0, "One TWO"), Utterance("b.wav", 1.0, "  ")])
    assert read_sentences(manifest) == ["one two"]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    with pytest.raises(LMError, match=r"broken\.jsonl"):
        read_sentences(broken)


@pytest.mark.slow
def test_asr_lm_build_and_install_kenlm_commands(tools: KenLMTools, tmp_path: Path, capsys) -> None:
    from asr.cli import main

    text = tmp_path / "text.txt"
    text.write_text("one two\ntwo one\n", encoding="utf-8")
    out = tmp_path / "lm"
    args = ["lm", "build", "--text", str(text), "--order", "2", "--out", str(out)]
    assert main([*args, "--unit", "char"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2-gram char LM of 2 sentences, vocabulary 6"  # o n e t w |
    assert lines[1:] == [f"wrote {out / name}" for name in ("lm.arpa", "lm.bin", "lm.json")]
    assert main(["lm", "install-kenlm"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"lmplz: {tools.lmplz}"


def test_asr_lm_build_refuses_a_missing_text_before_building_kenlm(tmp_path: Path, capsys) -> None:
    from asr.cli import main

    missing = tmp_path / "none.txt"
    assert main(["lm", "build", "--text", str(missing), "--out", str(tmp_path / "lm")]) == 1
    assert capsys.readouterr().err == f"asr: error: {missing}: no such file\n"


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
def test_build_problems_name_each_missing_library_and_its_package(
    cxx_without_boost: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXX", str(cxx_without_boost))
    boost = [d for d in KENLM_DEBS if d.startswith("libboost-")]
    assert kenlm_build_problems() == [
        "Boost program_options, Boost system, Boost thread, Boost unit_test_framework not found "
        f"(headers or libraries); install them (Debian: apt-get install {' '.join(boost)})"
    ]  # zlib, found, is not named

    monkeypatch.setenv("CXX", "no-such-compiler")
    assert kenlm_build_problems() == [
        "no-such-compiler not found; install them (Debian: apt-get install g++)"
    ]
