"""The training manifest kept on disk: the same utterances as `read_manifest`, random access,
forked DataLoader workers, and duplicates found by hashing keys."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from torch.utils.data import DataLoader

from asr.cli import _user_message
from asr.data import SpeechDataset, collate, read_manifest
from asr.manifest_index import ManifestChanged, ManifestIndex
from asr.text import normalize_text
from asr.tokenizers import CharTokenizer
from asr.train import load_normalised
from asr.validate import validate_manifest

RATE = 8000


def _row(audio: str, duration: float, text: str, **extra) -> str:
    row = {"audio_filepath": audio, "duration": duration, "text": text, **extra}
    return json.dumps(row, ensure_ascii=False)


def _awkward_manifest(tmp_path: Path) -> Path:
    """BOM, CRLF line ends, segments, relative and absolute paths, unicode, a blank last line."""
    for name, seconds in (("a.wav", 1.0), ("long.wav", 3.0), ("sub/é.wav", 0.5)):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        sf.write(tmp_path / name, np.full(round(seconds * RATE), 0.1, np.float32), RATE)
    rows = [
        _row("a.wav", 1.0, "Hello, World!"),
        _row("long.wav", 1.0, "naïve café", offset=0.5),
        _row(str(tmp_path / "long.wav"), 1.25, "Straße — ok", offset=1.5),
        _row("sub/é.wav", 0.5, "日本語 テキスト"),
    ]
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode() + b"\r\n\r\n")
    return path


def test_same_utterances_as_read_manifest(tmp_path):
    path = _awkward_manifest(tmp_path)
    validation = validate_manifest(path)
    assert not validation.problems, validation.problems
    expected = read_manifest(path)
    index = validation.index()
    assert isinstance(index, ManifestIndex) and len(index) == 4
    assert list(index) == expected
    assert [u.offset for u in index] == [None, 0.5, 1.5, None]
    normalised = validation.index(normalise=True)
    assert list(normalised) == [replace(u, text=normalize_text(u.text)) for u in expected]
    assert list(load_normalised(str(path), "train")) == list(normalised)


def test_random_access_select_and_concat(tmp_path):
    path = _awkward_manifest(tmp_path)
    expected = read_manifest(path)
    index = validate_manifest(path).index()
    for i in (3, 0, 2, 1, -1):
        assert index[i] == expected[i]
    assert list(index.select([2, 0])) == [expected[2], expected[0]]
    assert list(index[1:3]) == expected[1:3]
    both = ManifestIndex.concat([index.select([3]), index])
    assert list(both) == [expected[3], *expected]
    assert list(both.duration) == [0.5, 1.0, 1.0, 1.25, 0.5]
    two = load_normalised(f"{path},{path}", "train")  # comma-separated manifests
    assert len(two) == 8 and two[5] == replace(expected[1], text=normalize_text(expected[1].text))


def test_pickled_into_dataloader_workers(tmp_path):
    path = _awkward_manifest(tmp_path)
    index = validate_manifest(path).index(normalise=True)
    assert list(pickle.loads(pickle.dumps(index))) == list(index)
    tokenizer = CharTokenizer.from_texts(u.text for u in index)
    dataset = SpeechDataset(index, tokenizer, RATE)
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate, num_workers=2)
    indices, tokens = [], []
    for batch in loader:
        assert batch["errors"] == []
        indices += batch["indices"].tolist()
        tokens += [
            t[:n].tolist() for t, n in zip(batch["tokens"], batch["token_lens"], strict=True)
        ]
    assert indices == [0, 1, 2, 3]
    assert tokens == [tokenizer.encode(u.text) for u in index]
    assert len(dataset[2]["wav"]) == round(1.25 * RATE)  # the segment, not the whole file


def test_manifest_edited_after_checking_is_refused_by_name(tmp_path):
    """Byte positions are only right for the file that was checked: an edit (here a line
    added, as a data preparation re-run would) stops reading with the manifest named, in the
    main process and in a DataLoader worker alike."""
    path = _awkward_manifest(tmp_path)
    index = validate_manifest(path).index()
    other = validate_manifest(path).index()
    both = ManifestIndex.concat([index, other.select([1])])
    assert both[4].offset == 0.5  # unchanged: reads
    with path.open("ab") as f:
        f.write(_row("a.wav", 1.0, "one more").encode() + b"\n")
    expected = f"{path}: changed after it was checked"
    for read in (lambda: index[0], lambda: list(index), lambda: both[4], lambda: index[1:][0]):
        with pytest.raises(ManifestChanged, match=expected):
            read()
    dataset = SpeechDataset(index, CharTokenizer.from_texts(["ab"]), RATE)
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate, num_workers=1)
    with pytest.raises(ManifestChanged) as caught:
        next(iter(loader))
    message = _user_message(caught.value)
    assert message.startswith(expected) and "\n" not in message
    assert validate_manifest(path).index()[0].text == "Hello, World!"  # checked again: reads


def test_duplicates_found_far_apart_in_line_order(tmp_path):
    sf.write(tmp_path / "a.wav", np.full(RATE, 0.1, np.float32), RATE)
    rows = [_row("a.wav", 0.5, "ab", offset=k * 0.01) for k in range(50)]
    rows[20] = _row("a.wav", 0.5, "ab", offset=0.03)  # the span of line 4
    rows[40] = _row("a.wav", 0.5, "aé", offset=0.03)  # again, and outside the vocabulary
    rows[45] = _row(str(tmp_path / "a.wav"), 0.5, "ab", offset=0.1)  # line 11, absolute path
    path = tmp_path / "dup.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    tokenizer = CharTokenizer.from_texts(["ab"])
    result = validate_manifest(path, tokenizer, check_audio=False)
    key = f"{tmp_path / 'a.wav'}@0.03-0.53"
    assert [str(p) for p in result.problems] == [
        f"{path}:21: duplicate of line 4 ({key})",
        f"{path}:41: duplicate of line 4 ({key})",
        f"{path}:41: outside the model's vocabulary: 'é'",
        f"{path}:46: duplicate of line 11 ({tmp_path / 'a.wav'}@0.1-0.6)",
    ]
    assert len(result.index()) == 47
