"""What a user reads stays free of development history, and the README's links hold.

History words only mean something to whoever built the toolkit: numbered work periods, this
project's own tracker numbers, the people or agents who did the work, a machine named by whose
it is or how it was obtained, a target quoted from the tracker (HISTORY below lists the
patterns). A user reads figures, commands and hardware named by what it is ("2-core AMD EPYC
CPU, no GPU"); how the figures came about belongs in commit messages.

Decisions the patterns encode:
- "issue N" is allowed as a citation of another project, when the project's name comes right
  before it: "whisper.cpp issue 1803", "k2-fsa/icefall issue 12", "ESPnet's issue 3". A name
  counts when it holds a dot or a slash or is in OTHER_PROJECTS. "the issue" (our tracker,
  or a vague "the problem") is always flagged: say what the target or the problem is.
- "helper" is flagged as a whole word in prose: here it named the people and agents who
  worked on the code, and as a name ("a helper function") it says nothing of what the code
  does (STYLE.md: names say what things are). Identifiers such as `_helper` or `helper_fn`
  are not whole words and are not matched; the code itself is not scanned, only its comments,
  docstrings and test names.
- "session" alone is fine (an onnxruntime session, a recording session); a numbered one, or
  one placed in time relative to the text, is not.

User-facing files: README.md, docs/**/*.md, recipes/**/RESULTS.md, recipes' configs and
scripts, and the comments, docstrings and test names of asr/, data_prep/, bench/, tests/.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 260

# Projects cited by name without a dot or slash in it ("ESPnet issue 12").
OTHER_PROJECTS = {
    "espnet",
    "icefall",
    "k2",
    "lhotse",
    "kaldi",
    "kenlm",
    "pytorch",
    "torchaudio",
    "pyctcdecode",
    "flashlight",
    "whisper",
    "nemo",
    "speechbrain",
    "pocketsphinx",
    "librosa",
    "sentencepiece",
    "onnxruntime",
    "piper",
    "silero",
    "webrtcvad",
    "soundfile",
    "libsndfile",
    "ffmpeg",
    "pyav",
}

HISTORY = [
    ("numbered session", re.compile(r"\bsessions?[\s-]+\d+", re.IGNORECASE)),
    ("relative session", re.compile(r"\b(?:this|that|last|previous|next|earlier) session\b", re.I)),
    ("helper", re.compile(r"\bhelpers?\b", re.IGNORECASE)),
    ("CEO", re.compile(r"\bCEOs?\b")),
    ("lent", re.compile(r"\blent\b", re.IGNORECASE)),
    (
        "machine named by its owner",
        re.compile(
            r"\b(?:this|the|our) project's(?:\s+[\w-]+){0,3}?\s+(?:machines?|CPUs?|GPUs?)\b",
            re.IGNORECASE,
        ),
    ),
    ("the issue", re.compile(r"\bthe issue(?:'s)?\b", re.IGNORECASE)),
]
ISSUE_N = re.compile(r"(?:(\S+)\s+)?\bissues?\s*#?\d+", re.IGNORECASE)


def _cites_other_project(word: str | None) -> bool:
    """True when `word` (the token before "issue N") names another project."""
    if not word:
        return False
    name = re.sub(r"'s$", "", word.strip("`*_[](),:;\"'"), flags=re.IGNORECASE)
    return "." in name or "/" in name or name.lower() in OTHER_PROJECTS


def find_history(text: str) -> list[tuple[int, str]]:
    """(offset, kind) of every history word in `text`; line breaks count as spaces."""
    text = text.replace("\n", " ")
    found = [(m.start(), name) for name, pattern in HISTORY for m in pattern.finditer(text)]
    for m in ISSUE_N.finditer(text):
        if not _cites_other_project(m.group(1)):
            found.append((m.start(), "issue N"))
    return sorted(found)


def history_words(text: str) -> list[str]:
    """The kinds of history word in `text`, each once, in order of appearance.

    >>> history_words("the demo, since session 9, on this project's 2-core CPU machine")
    ['numbered session', 'machine named by its owner']
    >>> history_words("a whisper.cpp issue 1803 citation; an onnxruntime session")
    []
    >>> history_words("the figures of issue 10")
    ['issue N']
    """
    kinds: list[str] = []
    for _, kind in find_history(text):
        if kind not in kinds:
            kinds.append(kind)
    return kinds


Block = tuple[int, str]  # (first line number, text that may span several lines)


def _runs(lines: list[tuple[int, str]]) -> list[Block]:
    """Consecutive numbered lines joined into blocks, so a phrase broken by a line end is seen."""
    blocks: list[Block] = []
    last = None
    for number, text in lines:
        if blocks and last is not None and number == last + 1:
            first, joined = blocks[-1]
            blocks[-1] = (first, joined + "\n" + text)
        else:
            blocks.append((number, text))
        last = number
    return blocks


def _python_blocks(path: Path) -> list[Block]:
    """Comments (runs of lines), docstrings and test names of a Python file."""
    source = path.read_text(encoding="utf-8")
    comments = [
        (tok.start[0], tok.string)
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    ]
    blocks = _runs(comments)
    tree = ast.parse(source, filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                blocks.append((body[0].value.lineno, body[0].value.value))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and (
            node.name.startswith(("test", "Test"))
        ):
            blocks.append((node.lineno, node.name.replace("_", " ")))
    return blocks


def _comment_blocks(path: Path) -> list[Block]:
    """The `#` comments of a shell script, Makefile, YAML or TOML file, in runs of lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return _runs([(n, line[line.index("#") :]) for n, line in enumerate(lines, 1) if "#" in line])


def doc_files() -> list[Path]:
    """The Markdown a user reads: README.md, docs/, each recipe's RESULTS.md."""
    files = [ROOT / "README.md"]
    files += sorted((ROOT / "docs").rglob("*.md"))
    files += sorted((ROOT / "recipes").rglob("RESULTS.md"))
    return [f for f in files if f.is_file()]


def code_files() -> list[Path]:
    """Code whose comments, docstrings and test names a user reads; recipes' configs too."""
    files: list[Path] = []
    for folder in ("asr", "data_prep", "bench", "tests"):
        files += sorted((ROOT / folder).rglob("*.py"))
    for pattern in ("*.py", "*.sh", "*.yaml"):
        files += sorted((ROOT / "recipes").rglob(pattern))
    files += [ROOT / "Makefile", ROOT / "pyproject.toml"]
    # this file defines the words, so it names them
    return [f for f in files if f.is_file() and f != Path(__file__).resolve()]


def offenders(files: list[Path]) -> list[str]:
    """`path:line: kind: text of that line` for every history word."""
    found = []
    for path in files:
        if path.suffix == ".py":
            blocks = _python_blocks(path)
        elif path.suffix == ".md":
            blocks = [(1, path.read_text(encoding="utf-8"))]
        else:
            blocks = _comment_blocks(path)
        for first, text in blocks:
            for offset, kind in find_history(text):
                index = text.count("\n", 0, offset)
                line = text.split("\n")[index].strip()
                found.append(f"{path.relative_to(ROOT)}:{first + index}: {kind}: {line}")
    return found


def test_history_words_are_found_and_citations_allowed():
    assert history_words("AN4, since session 14") == ["numbered session"]
    assert history_words("sessions 11-13 and session-9's run") == ["numbered session"]
    assert history_words("before this session's sampler changes") == ["relative session"]
    assert history_words("Benchmarks of issue 10") == ["issue N"]
    assert history_words("as quoted in issue #698") == ["issue N"]
    assert history_words("both targets of the issue's list") == ["the issue"]
    assert history_words("an H100 lent for 15 minutes") == ["lent"]
    assert history_words("on this project's shared 2-core machine") == [
        "machine named by its owner"
    ]
    assert history_words("a helper wrote it") == ["helper"]
    assert history_words("the CEO asked") == ["CEO"]
    # citations of other projects, identifiers and ordinary words stay allowed
    assert history_words("whisper.cpp issue 1803 and k2-fsa/icefall issue 12") == []
    assert history_words("deepspeech.pytorch's issue #698; ESPnet issue 3") == []
    assert history_words("_helper(), helper_fn, an onnxruntime session, DIR/bob/session2") == []
    assert history_words("excellent, silent, talent; the project's goals") == []


def test_user_documents_have_no_history_words():
    found = offenders(doc_files())
    assert not found, "history words in documents:\n" + "\n".join(found)


def test_code_comments_and_test_names_have_no_history_words():
    found = offenders(code_files())
    assert not found, "history words in comments, docstrings or test names:\n" + "\n".join(found)


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _links(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # no links inside code blocks
    return LINK.findall(text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {_slug(m) for m in re.findall(r"^#+\s+(.*)$", text, flags=re.MULTILINE)}


def test_every_docs_page_is_linked_from_the_readme():
    readme = ROOT / "README.md"
    linked = {(ROOT / link.split("#")[0]).resolve() for link in _links(readme)}
    pages = sorted((ROOT / "docs").rglob("*.md"))
    assert pages, "docs/ has no pages"
    missing = [str(p.relative_to(ROOT)) for p in pages if p.resolve() not in linked]
    assert not missing, f"docs pages not linked from README.md: {missing}"


def test_relative_links_resolve():
    broken = []
    for path in doc_files():
        for link in _links(path):
            if re.match(r"[a-z][a-z0-9+.-]*:", link, flags=re.IGNORECASE):
                continue  # https:, mailto:
            target, _, anchor = link.partition("#")
            where = (path.parent / target).resolve() if target else path
            if not where.exists():
                broken.append(f"{path.relative_to(ROOT)}: {link} (no such file)")
            elif anchor and where.suffix == ".md" and anchor not in _anchors(where):
                broken.append(f"{path.relative_to(ROOT)}: {link} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)
