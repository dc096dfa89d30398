"""--report-to: each new round's metrics reach the tracker, read back with its own reader."""

import json

import pytest
from conftest import flags

from star import config as cfg
from star.cli import main
from star.experiment import loop
from star.experiment.tracking import scalars
from star.method.strategies import configure

SMALL = {
    "task": "obqa",
    "strategy": "random",
    "model.name": "tiny-random",
    "loop.schedule": [8, 16],
    "data.pool_size": 32,
    "data.eval_size": 16,
    "lora.r": 4,
    "train.epochs": 1,
}


def events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = [p for p in folder.iterdir() if p.is_dir()]
    accumulator = EventAccumulator(str(run))
    accumulator.Reload()
    return accumulator


def test_tensorboard_holds_every_rounds_metrics_once(tmp_path):
    out = tmp_path / "run"
    config = configure(cfg.build(SMALL))
    returned = loop.run(config, out, report_to="tensorboard")
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics == returned and len(metrics) == 2
    logged = events(out / "tracking")
    for tag in ("accuracy", "ece", "train_loss", "n_labeled", "seconds_per_phase/train"):
        want = [scalars(m)[tag] for m in metrics]
        got = logged.Scalars(tag)
        assert [e.step for e in got] == [m["round"] for m in metrics], tag
        assert [e.value for e in got] == pytest.approx(want, rel=1e-6), tag
    assert loop.run(config, out, report_to="tensorboard") == metrics  # resumed: nothing new
    assert len(events(out / "tracking").Scalars("accuracy")) == len(metrics)


def test_a_tracker_that_is_not_installed_is_refused_before_anything_runs(
    tmp_path, monkeypatch, capsys
):
    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, "is_wandb_available", lambda: False)
    args = ["run", "--out", tmp_path / "run", "--report-to", "wandb", *flags(task="obqa")]
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert "--report-to wandb: the wandb package is not installed" in err
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_scalars_flatten_sections_and_leave_out_what_is_not_a_number():
    row = {
        "round": 2,
        "accuracy": 0.5,
        "stopped": False,
        "seconds_per_phase": {"train": 3, "eval": 1.5},
        "stop": {"kappa": None, "uncertainty": 0.25},
        "note": "text",
    }
    assert scalars(row) == {
        "accuracy": 0.5,
        "stopped": 0.0,
        "seconds_per_phase/train": 3.0,
        "seconds_per_phase/eval": 1.5,
        "stop/uncertainty": 0.25,
    }
