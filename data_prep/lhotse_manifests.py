"""lhotse's corpus recipes -> our JSON-lines manifests.

lhotse (an optional extra: `pip install 'rnn-asr[lhotse]'`) prepares many corpora into a
`RecordingSet` (audio files) and a `SupervisionSet` (what is said where). Each supervision
becomes one `Utterance`: the recording's file, the supervision's duration and text, and an
`offset` (NeMo's field) when it covers only part of the file, so nothing needs cutting.

Only recordings stored as one plain file are taken: lhotse can also describe audio produced by
a shell command, fetched from a URL or held in memory, which our loader does not run or fetch;
such a recording is refused by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from asr.data import Utterance
from asr.datasets import DatasetError

# A supervision that starts at 0 and is this close to its recording's length covers the file.
WHOLE_FILE_TOLERANCE = 1e-3


def require_lhotse(dataset: str) -> ModuleType:
    """The lhotse module; DatasetError saying how to install it when it is missing."""
    try:
        import lhotse
    except ImportError:
        raise DatasetError(
            f"{dataset}: preparing it needs lhotse, an optional extra: "
            "pip install 'rnn-asr[lhotse]'"
        ) from None
    return lhotse


def recording_file(recording: Any) -> str:
    """The path of the one file a lhotse `Recording` reads; DatasetError for anything else."""
    sources = recording.sources
    if len(sources) != 1:
        raise DatasetError(
            f"recording {recording.id}: its audio comes from {len(sources)} sources "
            "(one per channel); only single-file recordings are supported"
        )
    source = sources[0]
    if source.type != "file":
        raise DatasetError(
            f"recording {recording.id}: its audio comes from a {source.type!r} source "
            f"({str(source.source)[:80]}); only plain files are supported: write the audio "
            "to files first"
        )
    return str(source.source)


def utterances_from_lhotse(recordings: Any, supervisions: Iterable[Any]) -> list[Utterance]:
    """One Utterance per supervision, in the supervisions' order.

    `recordings`: a lhotse RecordingSet (or any iterable of Recordings);
    `supervisions`: SupervisionSegments with `recording_id`, `start`, `duration`, `text`.
    DatasetError names the first supervision without text or recording.
    """
    by_id = {recording.id: recording for recording in recordings}
    out = []
    for sup in supervisions:
        recording = by_id.get(sup.recording_id)
        if recording is None:
            raise DatasetError(
                f"supervision {sup.id}: no recording {sup.recording_id!r} in the recordings"
            )
        if sup.text is None or not sup.text.strip():
            raise DatasetError(f"supervision {sup.id} ({sup.recording_id}): no text")
        whole = sup.start == 0 and abs(sup.duration - recording.duration) <= WHOLE_FILE_TOLERANCE
        out.append(
            Utterance(
                recording_file(recording),
                float(sup.duration),
                sup.text,
                None if whole else float(sup.start),
            )
        )
    return out
