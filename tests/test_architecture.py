"""The package layout holds (docs/architecture.md): the import contracts in pyproject.toml are
kept, a task file is read without torch, and the settings know no strategies or tasks."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def loaded_after(code: str, names: tuple[str, ...]) -> list[str]:
    """Which of `names` a fresh interpreter has imported after running `code`."""
    probe = f"import sys; {code}; print(sorted(m for m in {names!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout)


def test_the_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "0 broken" in out.stdout


def test_reading_a_task_file_imports_no_torch():
    code = (
        "from star.tasks.reading import Fields, read_items; "
        f"read_items(__import__('pathlib').Path({str(ROOT / 'examples/reviews/pool.jsonl')!r}), "
        "Fields()); import star.tasks.resolve"
    )
    assert loaded_after(code, ("torch", "numpy", "transformers")) == []


def test_the_settings_know_no_strategies_or_tasks():
    loaded = loaded_after("import star.config", ("star.method.strategies", "star.tasks", "torch"))
    assert loaded == []


def test_the_method_loads_without_the_engine():
    code = "import star.method.strategies, star.method.selection, star.method.stopping"
    names = ("star.engine", "star.experiment", "transformers", "peft", "accelerate")
    assert loaded_after(code, names) == []
