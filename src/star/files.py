"""Files written so that a reader (or a resumed process) sees the old state or the new one,
never half of one: temp file or folder in the same place, then a rename. Also the flock that
keeps a second star process out of a directory, and YAML read with one-line errors."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

from star.crash import crash_point
from star.errors import ConfigError, RunDirError

LOCK = ".lock"  # held (flock) by the star process working in a directory


def atomic_write(path: Path, text: str) -> None:
    """Temp file in the same folder, fsync, rename: readers see the old or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        crash_point(f"write {path.name}")  # the new text is on disk, not yet in place
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_folder(target: Path, fill: Callable[[Path], None], replace: bool = True) -> None:
    """`fill(tmp)` builds the folder's content in a temp folder beside `target`, which is then
    renamed into place: an interrupted build leaves nothing half-made. replace=False: `target`
    must be absent or empty (what the caller checked), never overwritten."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fill(tmp)
        tmp.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would hide it from other users
        if replace:
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.rmdir()  # empty, or this raises rather than lose anything
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_yaml(path: Path) -> dict:
    """The raw mapping of a YAML file; syntax errors name the file and line."""
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of options")
    return tree


def lock_dir(path: Path) -> int:
    """flock `path/.lock` for this process (the OS drops it if the process dies); a second
    star process is refused, naming the holder's pid. Returns the fd to close."""
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RunDirError(
            f"{path} is in use by another star process (pid {holder}); wait for it "
            "to finish or stop it"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd
