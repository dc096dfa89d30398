"""Journals: files only ever appended to, one whole-lines write then fsync, so every state of
a project is before or after a command, never between. A line cut short by a crash is ignored
when read, and cut off before the next append."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from star.errors import RunDirError


def append_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """One append of whole lines, then fsync: a crash leaves at most a cut last line, which
    the next append cuts off before writing (readers already ignore it). A write that fails
    (a full disk) is cut back off, so no part of the rows is recorded."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    if not data:
        return
    with open(path, "ab+") as f:
        f.seek(0)
        old = f.read()
        kept = old.rfind(b"\n") + 1  # 0 when the only line was cut
        if len(old) != kept:
            f.truncate(kept)
        try:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        except OSError:
            f.truncate(kept)  # needs no space
            raise


def read_journal(path: Path) -> list[dict]:
    """Complete lines of a journal; a last line without its newline (a cut write) is dropped."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")[:-1]  # the part after the last newline is cut or empty
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise RunDirError(f"{path}:{number}: damaged journal line") from None
    return rows
