"""The dataset registry behind `asr prepare`: entry points, the generated flags, the
source/download rules and their one-line errors; and asr/ as the bottom layer."""

from __future__ import annotations

import ast
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import asr.datasets
from asr.cli import main
from asr.data import Utterance, read_manifest, write_manifest
from asr.datasets import (
    ENTRY_POINT_GROUP,
    Dataset,
    DatasetError,
    Option,
    load_dataset,
    prepare_dataset,
)

ASR = Path(__file__).resolve().parents[1] / "asr"


def prepare_words(source: Path, out_dir: Path, repeat: int, shout: bool) -> dict[str, Path]:
    """A corpus prepared by a plain function: one utterance per line of source/words.txt."""
    words = (source / "words.txt").read_text().split()
    text = [w.upper() if shout else w for w in words for _ in range(repeat)]
    manifest = out_dir / "train.jsonl"
    write_manifest(manifest, [Utterance(f"{i}.wav", 1.0, t) for i, t in enumerate(text)])
    return {"train": manifest}


WORDS = Dataset(
    "words",
    "words of a text file (a test corpus)",
    prepare=prepare_words,
    options=(
        Option("repeat", "times each word is said", default=1, type=int),
        Option("shout", "upper-case the words", type=bool),
    ),
    source_help="a folder with words.txt",
)
MADE = Dataset("made", "made on the spot", prepare=lambda source, out_dir: {}, takes_source=False)
WRONG_NAME = Dataset("other", "registered under another name", prepare=lambda s, o: {})


@pytest.fixture
def fake_registry(monkeypatch):
    """The registry holds this module's datasets (plus one broken entry) instead of the
    installed ones."""
    names = {"words": "WORDS", "made": "MADE", "wrong": "WRONG_NAME", "gone": "NOT_THERE"}
    eps = {
        name: EntryPoint(name, f"tests.test_datasets:{attr}", ENTRY_POINT_GROUP)
        for name, attr in sorted(names.items())
    }
    monkeypatch.setattr(asr.datasets, "registered", lambda: eps)
    return eps


@pytest.fixture
def words_source(tmp_path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    (source / "words.txt").write_text("yes no\n")
    return source


def test_installed_registry_lists_fsdd_and_synth(capsys):
    assert main(["prepare", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    by_name = {line.split()[0]: line for line in lines}
    assert {"fsdd", "synth"} <= set(by_name)
    assert "downloads" in by_name["fsdd"] and "made here" in by_name["synth"]
    assert load_dataset("fsdd").download is not None
    assert load_dataset("synth").takes_source is False


def test_unknown_dataset_is_one_line_naming_the_registered_ones(capsys):
    assert main(["prepare", "no-such-corpus", "--out-dir", "x"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("asr: error: unknown dataset 'no-such-corpus'; registered: ")
    assert "fsdd" in line and "synth" in line


def test_plain_function_dataset_through_asr_prepare(fake_registry, words_source, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["prepare", "words", "--source", str(words_source), "--out-dir", str(out)]
    assert main([*args, "--repeat", "2", "--shout"]) == 0
    assert capsys.readouterr().out == f"train: {out / 'train.jsonl'}\n"
    assert [u.text for u in read_manifest(out / "train.jsonl")] == ["YES", "YES", "NO", "NO"]
    assert main(args) == 0  # the options' defaults: repeat 1, no shouting
    assert [u.text for u in read_manifest(out / "train.jsonl")] == ["yes", "no"]
    # SOURCE may also come first, without --source; not both
    assert main(["prepare", "words", str(words_source), "--out-dir", str(out), "--shout"]) == 0
    assert [u.text for u in read_manifest(out / "train.jsonl")] == ["YES", "NO"]
    capsys.readouterr()
    assert main([*args, str(words_source)]) == 1
    assert "give SOURCE or --source, not both" in capsys.readouterr().err


def test_download_dir_without_download_is_refused(fake_registry, tmp_path, capsys):
    args = ["prepare", "words", "--download-dir", str(tmp_path), "--out-dir", str(tmp_path)]
    assert main(args) == 1
    (line,) = capsys.readouterr().err.splitlines()
    cause = "words cannot be downloaded here: give --source DIR (a folder with words.txt)"
    assert line == f"asr: error: {cause}"


@pytest.mark.parametrize(
    "args, message",
    [
        (["words"], "words needs --source DIR (a folder with words.txt)"),
        (["words", "--source", "/no/such/dir"], "words: --source /no/such/dir: no such file"),
        (["made", "--source", "."], "made is made here: it takes neither --source nor"),
        (["wrong"], "entry point 'wrong' (tests.test_datasets:WRONG_NAME) is not a Dataset called"),
        (["gone"], "dataset 'gone': cannot load tests.test_datasets:NOT_THERE (AttributeError"),
        ([], "prepare needs a dataset NAME (`asr prepare --list` shows them)"),
    ],
)
def test_bad_requests_are_one_line(fake_registry, tmp_path, capsys, args, message):
    out = ["--out-dir", str(tmp_path)] if args else []
    assert main(["prepare", *args, *out]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert message in line


def test_list_shows_what_loads_and_names_what_does_not(fake_registry, capsys):
    assert main(["prepare", "--list"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "made   made here       made on the spot",
        "words  needs --source  words of a text file (a test corpus)",
    ]
    errors = captured.err.splitlines()
    assert len(errors) == 2 and "'gone'" in errors[0] and "'wrong'" in errors[1]


def test_generated_help_shows_the_dataset_flags(fake_registry, capsys):
    with pytest.raises(SystemExit) as done:
        main(["prepare", "words", "--help"])
    assert done.value.code == 0
    help_text = capsys.readouterr().out
    assert "usage: asr prepare words" in help_text
    for flag in ("--out-dir", "--source", "--repeat", "--shout"):
        assert flag in help_text
    assert "--download-dir" not in help_text  # words cannot be downloaded


def test_download_then_prepare(words_source, tmp_path):
    """A corpus whose download is someone else's code (a library's, say): any callable."""
    fetched = []

    def download(root: Path) -> Path:
        fetched.append(root)
        return words_source

    spec = Dataset("w", "words", prepare=prepare_words, download=download, options=WORDS.options)
    manifests = prepare_dataset(spec, tmp_path / "out", download_dir=tmp_path / "dl", repeat=3)
    assert fetched == [tmp_path / "dl"]
    assert len(read_manifest(manifests["train"])) == 6
    with pytest.raises(DatasetError, match="give --source or --download-dir, not both"):
        prepare_dataset(spec, tmp_path, source=words_source, download_dir=tmp_path)
    with pytest.raises(DatasetError, match="w: unknown option"):
        prepare_dataset(spec, tmp_path, source=words_source, loud=True)


def test_download_options_say_what_to_fetch(words_source, tmp_path):
    """Options named in download_options reach download too (e.g. which parts to fetch)."""
    fetched = []

    def download(root: Path, repeat: int) -> Path:
        fetched.append(repeat)
        return words_source

    spec = Dataset(
        "w", "words", prepare_words, download, options=WORDS.options, download_options=("repeat",)
    )
    prepare_dataset(spec, tmp_path / "out", download_dir=tmp_path / "dl", repeat=2)
    prepare_dataset(spec, tmp_path / "out", download_dir=tmp_path / "dl")  # the default
    assert fetched == [2, 1]
    with pytest.raises(DatasetError, match=r"download option\(s\) loud are not options"):
        Dataset("w", "words", prepare_words, download, download_options=("loud",))


def test_bad_registrations_are_refused():
    with pytest.raises(DatasetError, match="option 'out_dir': must be a Python identifier"):
        Option("out_dir", "clashes with asr prepare's own flag")
    with pytest.raises(DatasetError, match="a switch"):
        Option("force", "a switch that is on by default", default=True, type=bool)
    with pytest.raises(DatasetError, match=r"'x': option\(s\) n given twice"):
        Dataset("x", "x", prepare_words, options=(Option("n", "a"), Option("n", "b")))
    with pytest.raises(DatasetError, match="nothing to download"):
        Dataset("x", "x", prepare_words, download=lambda root: root, takes_source=False)
    spec = Dataset("x", "x", prepare=lambda source, out_dir: ["not", "a", "mapping"])
    with pytest.raises(DatasetError, match="x: prepare returned list"):
        prepare_dataset(spec, ".", source=".")


# --- asr/ is the bottom layer: it finds datasets through entry points, never by import ------


def _asr_imports() -> dict[str, set[str]]:
    """asr module -> every module it imports, at module level or inside functions."""
    imports = {}
    for path in sorted(ASR.glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        imports[path.stem] = names
    return imports


def test_asr_never_imports_data_prep_recipes_or_bench():
    bad = {
        (module, name)
        for module, names in _asr_imports().items()
        for name in names
        if name.split(".")[0] in ("data_prep", "recipes", "bench", "tests")
    }
    assert not bad


def test_no_import_cycle_among_asr_modules():
    modules = {p.stem for p in ASR.glob("*.py")}
    graph = {
        module: {n.split(".")[1] for n in names if n.startswith("asr.")} & modules - {module}
        for module, names in _asr_imports().items()
    }
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path, module]))
        if module not in done:
            for dep in sorted(graph[module]):
                visit(dep, [*path, module])
            done.add(module)

    for module in sorted(graph):
        visit(module, [])
