"""Dataset registry behind `asr prepare NAME`: one `Dataset` record per corpus.

A corpus module (`data_prep/<name>.py`, or a module of any installed package, lhotse-backed
ones included) defines a `Dataset` and advertises it under the entry-point group
`rnn_asr.datasets` in its `pyproject.toml`, so `asr/` finds it without importing `data_prep/`:

    [project.entry-points."rnn_asr.datasets"]
    an4 = "data_prep.an4:DATASET"

(then `pip install -e .` again, so the entry point is registered). `asr prepare NAME --out-dir
DIR --source DIR | --download-dir DIR [options]` then calls `prepare(source, out_dir,
**options)`, after `source = download(download_dir)` when asked to download. Both are plain
callables: the registry assumes nothing of how a corpus is fetched or read, so a wrapper around
a library's own download and preparation fits as well as our own code.

>>> spec = Dataset("toy", "a toy corpus", prepare=lambda source, out_dir: {})
>>> spec.takes_source, spec.download is None, [o.flag for o in spec.options]
(True, True, [])
>>> Option("num_train", "training utterances", default=10, type=int).flag
'--num-train'
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

ENTRY_POINT_GROUP = "rnn_asr.datasets"
# Keywords `asr prepare` itself uses: no Option may take them.
RESERVED_NAMES = frozenset({"source", "out_dir", "download_dir", "list", "help"})


class DatasetError(ValueError):
    """An unknown dataset, a bad registration, or a source/download request it cannot serve."""


@dataclass(frozen=True)
class Option:
    """One extra flag of `asr prepare NAME`, passed to `prepare` as the keyword `name`.

    >>> Option("force", "replace an old corpus", type=bool).switch
    True
    """

    name: str  # keyword argument of prepare(); the flag is --name with dashes
    help: str  # one line for --help
    default: Any = None  # value when the flag is not given
    # converts the flag's text (a ValueError's message is shown to the user); bool makes a
    # switch: a flag without a value, True when given
    type: Callable[[str], Any] = str
    choices: tuple[Any, ...] | None = None  # allowed values, or None for any
    metavar: str | None = None  # the value's name in --help (default: NAME in capitals)

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name in RESERVED_NAMES:
            raise DatasetError(
                f"option {self.name!r}: must be a Python identifier other than "
                f"{', '.join(sorted(RESERVED_NAMES))}"
            )
        if self.switch:
            if self.default not in (None, False):
                raise DatasetError(f"option {self.name!r}: a switch (type=bool) defaults to False")
            object.__setattr__(self, "default", False)  # frozen: set once, here

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def switch(self) -> bool:
        return self.type is bool


@dataclass(frozen=True)
class Dataset:
    """What `asr prepare` needs to know of a corpus."""

    name: str  # the NAME of `asr prepare NAME`
    summary: str  # one line for `asr prepare --list`
    # prepare(source, out_dir, **options) -> {split name: manifest path}; source is None for
    # corpora made on the spot (takes_source=False)
    prepare: Callable[..., Mapping[str, Path]]
    # download(root) -> the unpacked copy to prepare from; None when the corpus cannot be
    # downloaded (licensed, user-supplied, or made on the spot)
    download: Callable[[Path], Path] | None = None
    options: tuple[Option, ...] = ()
    # options also given to download (as keywords): what to fetch, e.g. which parts
    download_options: tuple[str, ...] = ()
    takes_source: bool = True  # False: made here, neither --source nor --download-dir
    source_help: str = "a local copy of the corpus"  # what --source expects
    out_dir_help: str = "where the manifests go"  # what --out-dir receives

    def __post_init__(self) -> None:
        names = [o.name for o in self.options]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise DatasetError(f"dataset {self.name!r}: option(s) {', '.join(twice)} given twice")
        stray = sorted(set(self.download_options) - set(names))
        if stray:
            raise DatasetError(
                f"dataset {self.name!r}: download option(s) {', '.join(stray)} are not options"
            )
        if not self.takes_source and self.download is not None:
            raise DatasetError(
                f"dataset {self.name!r}: a corpus made on the spot (takes_source=False) "
                "has nothing to download"
            )


class Manifests(dict):
    """{split name: manifest path}, what `prepare_dataset` returns. `speakers`, {split name:
    number of speakers}, is set when the corpus's `prepare` returned a mapping with that
    attribute (an importer that knows who speaks), else None."""

    speakers: dict[str, int] | None = None


def registered() -> dict[str, EntryPoint]:
    """Dataset name -> its (not yet loaded) entry point, sorted by name."""
    eps = entry_points(group=ENTRY_POINT_GROUP)
    return {ep.name: ep for ep in sorted(eps, key=lambda ep: ep.name)}


def load_dataset(name: str) -> Dataset:
    """The registered `Dataset` called `name`; DatasetError naming the choices otherwise."""
    eps = registered()
    if name not in eps:
        known = ", ".join(eps) or "none (is the package installed with pip install -e .?)"
        raise DatasetError(f"unknown dataset {name!r}; registered: {known}")
    try:
        spec = eps[name].load()
    except (ImportError, AttributeError) as err:
        raise DatasetError(
            f"dataset {name!r}: cannot load {eps[name].value} ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(spec, Dataset) or spec.name != name:
        raise DatasetError(
            f"entry point {name!r} ({eps[name].value}) is not a Dataset called {name!r}"
        )
    return spec


def all_datasets() -> list[Dataset]:
    """Every registered dataset, loaded, sorted by name."""
    return [load_dataset(name) for name in registered()]


def prepare_dataset(
    spec: Dataset,
    out_dir: str | Path,
    source: str | Path | None = None,
    download_dir: str | Path | None = None,
    **options: Any,
) -> Manifests:
    """Download if asked, then prepare: what `asr prepare NAME` does, as a function.

    Options not given take their `Option.default`. Returns {split name: manifest path}
    (`Manifests`, with the number of speakers per split when `prepare` gave it).
    Two runs into the same `out_dir` (or `download_dir`) take turns: the second waits for the
    first's lock on the folder (`folder_lock`), saying so, so neither sees the other's half-done
    files.

    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> toy = Dataset("toy", "made here", prepare=lambda source, out_dir, n: {"train": "t.jsonl"},
    ...               options=(Option("n", "utterances", default=3, type=int),), takes_source=False)
    >>> prepare_dataset(toy, out)
    {'train': PosixPath('t.jsonl')}
    >>> prepare_dataset(toy, out, source="somewhere")
    Traceback (most recent call last):
    ...
    asr.datasets.DatasetError: toy is made here: it takes neither --source nor --download-dir
    """
    unknown = sorted(set(options) - {o.name for o in spec.options})
    if unknown:
        raise DatasetError(f"{spec.name}: unknown option(s) {', '.join(unknown)}")
    values = {o.name: options.get(o.name, o.default) for o in spec.options}
    fetch = {name: values[name] for name in spec.download_options}
    where = _source(spec, source, download_dir, fetch)
    with folder_lock(Path(out_dir)):
        manifests = spec.prepare(where, Path(out_dir), **values)
    if not isinstance(manifests, Mapping):
        raise DatasetError(
            f"{spec.name}: prepare returned {type(manifests).__name__}, "
            "not a mapping of split name -> manifest path"
        )
    result = Manifests({str(split): Path(path) for split, path in manifests.items()})
    result.speakers = getattr(manifests, "speakers", None)
    return result


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock (flock) on the folder itself, creating it; while another process
    holds it, say so and wait. No lock file is left behind, and the lock goes with the
    process, even if killed."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"asr: {folder} is in use by another `asr prepare`; waiting for it to finish",
                file=sys.stderr,
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _source(
    spec: Dataset,
    source: str | Path | None,
    download_dir: str | Path | None,
    fetch: dict[str, Any] | None = None,
) -> Path | None:
    """The folder to prepare from: `source`, or what `download` unpacked into `download_dir`."""
    if not spec.takes_source:
        if source is not None or download_dir is not None:
            raise DatasetError(
                f"{spec.name} is made here: it takes neither --source nor --download-dir"
            )
        return None
    if source is not None and download_dir is not None:
        raise DatasetError(f"{spec.name}: give --source or --download-dir, not both")
    if download_dir is not None:
        if spec.download is None:
            raise DatasetError(
                f"{spec.name} cannot be downloaded here: give --source DIR ({spec.source_help})"
            )
        with folder_lock(Path(download_dir)):
            return Path(spec.download(Path(download_dir), **(fetch or {})))
    if source is None:
        if spec.download is None:
            raise DatasetError(f"{spec.name} needs --source DIR ({spec.source_help})")
        raise DatasetError(
            f"{spec.name} needs --source DIR ({spec.source_help}) "
            "or --download-dir DIR (to download it there)"
        )
    if not Path(source).exists():
        raise DatasetError(f"{spec.name}: --source {source}: no such file or folder")
    return Path(source)
