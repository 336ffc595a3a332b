"""normalize_text: one normaliser for training, LM text and scoring, in every script."""

from __future__ import annotations

import pytest

from asr.text import normalize_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HELLO World", "hello world"),
        ("Hello, world! How are you?", "hello world how are you"),
        ("well...yes;no", "well yes no"),
        ("it's o'clock", "it's o'clock"),
        ("DON'T", "don't"),
        ("ＦＵＬＬ　ＷＩＤＴＨ", "full width"),  # NFKC: full-width letters and space
        ("ﬁne", "fine"),  # NFKC: the fi ligature
        ("x²", "x2"),  # NFKC: superscript two
        ("cafe\u0301", "caf\u00e9"),  # NFKC composes e + combining acute into one character
        ("  tabs\tand\nnewlines  ", "tabs and newlines"),
        ("snake_case", "snake case"),
        ("4PM", "4pm"),
        ("", ""),
        (" ?! ", ""),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_normalize_text_is_idempotent():
    text = "  Hello, World!  It's  4PM. "
    once = normalize_text(text)
    assert once == "hello world it's 4pm"
    assert normalize_text(once) == once


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Combining marks stay on their letters: Devanagari vowel signs and virama (Mc, Mn),
        # Tamil, Arabic harakat, Hebrew points; `\w` alone would split these words apart.
        ("हिन्दी, भाषा।", "हिन्दी भाषा"),
        ("தமிழ் மொழி!", "தமிழ் மொழி"),
        ("كَتَبَ الوَلَدُ.", "كَتَبَ الوَلَدُ"),
        ("שָׁלוֹם, עוֹלָם", "שָׁלוֹם עוֹלָם"),
        ("می\u200cخواهم.", "می\u200cخواهم"),  # Persian zero-width non-joiner kept in the word
        ("!\u0301a \u200cb", "a b"),  # a mark or joiner with no letter before it is dropped
        ("Die STRAẞE ist groß.", "die straße ist groß"),  # German: ß kept, never "ss"
        ("ΟΔΟΣ", "οδο\u03c2"),  # Greek: final sigma
        ("ışık ılık izmir'de", "ışık ılık izmir'de"),  # Turkish lowered at prepare time: as is
        ("IŞIK", "işik"),  # ... because Python's lower-casing is not Turkish (commonvoice.py)
        ("T\u0308", "\u1e97"),  # lower-cased t + diaeresis composes to one character
        ("漢字と かな", "漢字と かな"),
    ],
)
def test_normalize_text_keeps_every_script(raw, expected):
    assert normalize_text(raw) == expected
    assert normalize_text(expected) == expected


def test_normalize_text_is_idempotent_on_cased_marked_and_compatibility_characters():
    """normalize_text(normalize_text(t)) == normalize_text(t) for every character that
    lower-casing, NFKC or the mark rule can touch, alone and after a letter."""
    import sys
    import unicodedata

    chars = [
        chr(c)
        for c in range(sys.maxunicode + 1)
        if not 0xD800 <= c <= 0xDFFF
        and (
            chr(c).lower() != chr(c)
            or unicodedata.category(chr(c))[0] == "M"
            or unicodedata.decomposition(chr(c))
        )
    ]
    assert len(chars) > 9000
    for c in chars:
        for text in (c, f"A{c}\u0308"):
            once = normalize_text(text)
            assert normalize_text(once) == once, (hex(ord(c)), text, once)


def test_ascii_fast_path_treats_every_ascii_character_as_the_general_path_does():
    for code in range(128):
        c = chr(code)
        general = normalize_text(f"é{c}é{c}").replace("é", "e")  # not ASCII: the general path
        assert normalize_text(f"e{c}e{c}") == general, repr(c)
