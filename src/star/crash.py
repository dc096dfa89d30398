"""The crash-test hook: a named point where a test kills the process, to check that what was
written before it is enough to resume.

With STAR_CRASH_AT=name:n, the n-th time `crash_point(name)` is reached the process touches
$STAR_CRASH_FLAG and waits there to be killed. Everywhere else it is a no-op.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_HITS: dict[str, int] = {}


def crash_point(name: str) -> None:
    want = os.environ.get("STAR_CRASH_AT")
    if not want or want.rpartition(":")[0] != name:
        return
    _HITS[name] = _HITS.get(name, 0) + 1
    if _HITS[name] == int(want.rpartition(":")[2]):
        Path(os.environ["STAR_CRASH_FLAG"]).write_text(name)
        time.sleep(3600)
