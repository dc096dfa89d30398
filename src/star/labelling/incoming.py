"""Labels coming back from people: each checked against the pool and against what is already
recorded, all of a file before any is kept, so a bad file changes nothing."""

from __future__ import annotations

from pathlib import Path

from star.errors import BadInputError
from star.labelling.formats import Label
from star.tasks.reading import Item


def checked_labels(
    file: Path,
    found: list[Label],
    pool: list[Item],
    labels: dict[str, str],
    exported: set[str],
    relabel: bool = False,
    allow_unexported: bool = False,
) -> tuple[dict[str, Label], int]:
    """(the new labels by id, how many were already recorded as they are) of the labels
    `found` in `file`. A label for an id never exported, or one that differs from the
    recorded label, is refused unless the flag allows it."""
    by_id = {i.id: i for i in pool}
    new: dict[str, Label] = {}
    unchanged = 0
    for lab in found:
        where = f"{file}:{lab.line}" if file.suffix != ".json" else f"{file}: task {lab.line}"
        item = by_id.get(lab.id)
        if item is None:
            raise BadInputError(f"{where}: id {lab.id!r} is not in the project's pool")
        if item.choices and lab.label not in item.choices:
            raise BadInputError(
                f"{where}: label {lab.label!r} for {lab.id!r} is not one of {list(item.choices)}"
            )
        if lab.id in new and new[lab.id].label != lab.label:
            raise BadInputError(f"{where}: {lab.id!r} is labelled twice in this file, differently")
        if labels.get(lab.id) == lab.label:
            unchanged += 1
            continue
        if lab.id in labels and not relabel:
            raise BadInputError(
                f"{where}: {lab.id!r} is already labelled {labels[lab.id]!r}, not "
                f"{lab.label!r}; pass --relabel to replace it"
            )
        if lab.id not in exported and lab.id not in labels and not allow_unexported:
            raise BadInputError(
                f"{where}: {lab.id!r} was never exported by `star next`; pass "
                "--allow-unexported to accept it"
            )
        new[lab.id] = lab
    return new, unchanged
