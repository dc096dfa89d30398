"""The public API: the runnable example, documented names, and the CLI going through it."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import star
from star import api
from star.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_the_example_runs():
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "api.py")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["round 0", "round 1"]
    assert "{'imported': 4, 'unchanged': 0}" in lines
    assert sum(line.startswith("stop: no (") for line in lines) == 2


def test_every_public_name_is_documented_and_reachable_from_star():
    for name in api.__all__:
        thing = getattr(star, name)
        assert thing is getattr(api, name)
        assert inspect.getdoc(thing), name
    assert set(api.__all__) == set(star._API)
    with pytest.raises(AttributeError):
        star.not_a_name  # noqa: B018


def test_the_cli_runs_through_the_api(monkeypatch, tmp_path):
    calls = []

    def run(config, out, on_round=None, report_to="none"):
        calls.append((out, report_to))
        return []

    monkeypatch.setattr(api, "run", run)
    assert (
        main(["run", "--model", "tiny-random", "--task", "obqa", "--out", str(tmp_path / "r")]) == 0
    )
    assert calls == [(tmp_path / "r", "none")]
    opened = []
    real = api.open_project
    monkeypatch.setattr(api, "open_project", lambda path: opened.append(path) or real(path))
    pool = ROOT / "examples" / "reviews" / "pool.jsonl"
    fast = ["--model", "tiny-random", "--lora-r", "4", "--epochs", "1"]
    assert (
        main(["init", str(tmp_path / "p"), "--pool", str(pool), "--strategy", "random", *fast]) == 0
    )
    assert main(["next", str(tmp_path / "p"), "--k", "2"]) == 0
    assert opened == [tmp_path / "p"] * 2  # init's status, then next


def test_read_metrics_of_a_folder_without_a_run_says_so(tmp_path):
    from star.errors import RunDirError

    with pytest.raises(RunDirError, match="no finished round yet"):
        star.read_metrics(tmp_path)


def test_make_config_fills_the_strategys_defaults_and_refuses_unknown_keys():
    from star.errors import ConfigError

    config = star.make_config({"strategy": "star", "task": "trec"})
    assert config.uncertainty.mc_passes == 3 and config.train.b_decay == 0.5
    with pytest.raises(ConfigError, match="unknown key"):
        star.make_config({"loop.nope": 1})
