"""The training and dev utterances: manifests checked as `asr validate` checks them, text
normalised, over-long training utterances left out."""

from __future__ import annotations

import numpy as np

from asr.manifest_index import ManifestIndex
from asr.validate import validate_manifest


class DataError(ValueError):
    """Training data with problems; `problems` has one line per bad utterance."""

    def __init__(
        self,
        problems: list[str],
        where: str = "the training data",
        hint: str = "`asr validate` lists them, data.drop_bad_lines=true leaves such lines out",
    ):
        super().__init__(f"{len(problems)} problem(s) in {where}; {hint}:\n" + "\n".join(problems))
        self.problems = problems


def load_normalised(manifest: str, role: str, drop_bad_lines: bool = False) -> ManifestIndex:
    """Utterances of one or more comma-separated manifests, checked by `asr validate`'s rules
    (audio headers included), text normalised as each is read: they stay on disk, a few
    numbers per line in memory.

    A manifest with problems raises DataError listing every one, in `asr validate`'s words;
    with `drop_bad_lines` its bad lines are left out instead, with a count.
    """
    if not manifest:
        raise ValueError(
            f"data.{role}_manifest is not set: give --data DIR (where `asr prepare` wrote "
            f"train.jsonl and dev.jsonl) or data.{role}_manifest=FILE"
        )
    parts, problems = [], []
    for path in manifest.split(","):
        validation = validate_manifest(path)
        parts.append(validation.index())
        problems += [str(p) for p in validation.problems]
        if validation.problems and drop_bad_lines:
            for line in problems[-len(validation.problems) :]:
                print(f"warning: {line}")
            print(
                f"{path}: {validation.bad_lines} bad line(s) of {validation.total} left out "
                "(data.drop_bad_lines)"
            )
    if problems and not drop_bad_lines:
        raise DataError(problems, f"data.{role}_manifest")
    utts = ManifestIndex.concat(parts, normalise=True)
    if not len(utts):
        raise DataError(problems, f"data.{role}_manifest")
    return utts


def within_max_duration(utts: ManifestIndex, limit: float, manifest: str) -> ManifestIndex:
    """The utterances no longer than `limit` seconds (all of them when `limit` <= 0), saying
    how many were left out; ValueError naming `manifest` when none is left."""
    if limit <= 0:
        return utts
    kept = utts.select(np.flatnonzero(utts.duration <= limit))
    if not len(kept):
        raise ValueError(f"{manifest}: every utterance is over data.max_duration={limit:g} s")
    if len(kept) < len(utts):
        print(
            f"{manifest}: {len(utts) - len(kept)} utterance(s) longer than "
            f"data.max_duration={limit:g} s left out"
        )
    return kept
