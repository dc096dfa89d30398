"""A non-editable install carries every shipped data file: the built wheel's file list."""

import subprocess
import sys
import zipfile
from pathlib import Path

from star.tasks.registry import TASKS, data_file

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_every_built_in_tasks_data(tmp_path):
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("star_al-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = ROOT / "src" / "star"
    data = package / "tasks" / "data"
    shipped = {str(p.relative_to(package.parent)) for p in data.rglob("*") if p.is_file()}
    assert shipped and shipped <= names, sorted(shipped - names)[:5]
    for task in TASKS:
        for split in ("train", "test"):
            path = data_file(task, split)
            assert str(path.relative_to(package.parent)) in names, (task, split)
    assert "star/active/step.py" in names and not any(n.startswith("tests/") for n in names)
