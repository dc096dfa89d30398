"""Shared fixtures: a repo-local model cache and the tiny random Llama, loaded once."""

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest

# Built models (the converted embedded model, the tiny test model) are cached inside the
# checkout, so tests never touch the user's cache and later runs skip the conversion.
os.environ.setdefault("STAR_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "star"))


def tree_hash(path: Path) -> str:
    """A digest of every file under `path` (names and bytes; the lock file left out): equal
    before and after a refused command means it changed nothing."""
    digest = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file() and p.name != ".lock":
            digest.update(str(p.relative_to(path)).encode() + p.read_bytes())
    return digest.hexdigest()


@pytest.fixture(name="tree_hash")
def tree_hash_fixture():
    """`tree_hash` for test folders that cannot import this conftest by name."""
    return tree_hash


def flags(**options) -> list[str]:
    """Command-line flags from keywords: flags(init_size=4) == ["--init-size", "4"]."""
    return [x for k, v in options.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def signal_settings(**changes):
    """SignalSettings of a small gold-target run, with `changes`."""
    from star.signals import SignalSettings

    settings = SignalSettings(
        target="gold",
        length_norm=False,
        mc_passes=1,
        mc_top=None,
        star_measure="pe",
        batch_tokens=64,
        mc_seed=5,
        merge=False,
        answer_kind="greedy:4",
        start_id=1,
    )
    return dataclasses.replace(settings, **changes)


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the seeded tiny Llama with the SmolLM2 tokenizer, fp32."""
    from star import model as models
    from star.config import ModelConfig

    return models.load(ModelConfig(name=models.TINY, dtype="float32"))


@pytest.fixture(autouse=True)
def own_signal_cache(tmp_path, monkeypatch):
    """Base-model signals persist across runs by design; each test starts with none."""
    monkeypatch.setenv("STAR_SIGNAL_CACHE", str(tmp_path / "signal-cache"))
