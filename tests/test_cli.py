"""The command line as a user meets it: help, one-line errors, the acceptance command."""

import json
import subprocess
import sys

import pytest

from star import config as cfg
from star.cli import build_parser, main

# The small tiny-random setting.
SMALL = (
    "--model tiny-random --init-size 8 --query-size 8 --rounds 2 --pool-size 64 --eval-size 16"
).split()


def star(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "star", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_run_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(["run", "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    for option in cfg.options():
        assert (f"--{option.flag}" in text) == option.cli  # resolved fields are not options
    assert "--out" in text and "--config" in text and "resumes" in text


def test_top_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "run" in text and "strategies" in text


@pytest.mark.parametrize(
    "args,message",
    [
        (["--task", "mnist"], "star: error: unknown task 'mnist'; choose from: gsm8k, boolq, obqa"),
        (["--strategy", "magic"], "star: error: unknown strategy 'magic'"),
        (["--model", "/no/such/folder"], "star: error: model '/no/such/folder' is neither"),
        (["--rounds", "many"], "star: error: --rounds: loop.rounds must be int, got 'many'"),
        (["--quantize", "4bit"], "star: error: --quantize 4bit needs a CUDA GPU"),
        (["--attention", "flash"], "star: error: --attention flash needs a CUDA GPU"),
    ],
)
def test_bad_options_give_one_line(tmp_path, capsys, args, message):
    code = main(["run", "--out", str(tmp_path / "r"), *SMALL, *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_not_a_model_folder(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    assert main(["run", "--out", str(tmp_path / "r"), "--model", str(tmp_path / "m")]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_usage_errors_are_one_line():
    result = star("run", "--out", "x", "--bogus")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "unrecognized arguments: --bogus" in result.stderr
    assert "Traceback" not in result.stderr


def test_strategies_lists_the_registry():
    result = star("strategies")
    assert result.returncode == 0
    from star.method.strategies import STRATEGIES

    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == list(STRATEGIES) and "star" in names and "star-authors" in names
    marked = [line.split()[0] for line in result.stdout.splitlines() if "(default)" in line]
    assert marked == [cfg.RunConfig().strategy]


def test_acceptance_command(tmp_path):
    """The issue's command, as a subprocess: it finishes and writes the run directory."""
    out = tmp_path / "run"
    result = star(
        "run", "--task", "obqa", "--strategy", "pe", *SMALL, "--seed", "0", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    table = [line.split() for line in result.stdout.splitlines()[2:]]
    assert [row[:2] for row in table] == [["0", "8"], ["1", "16"]]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["n_labeled"] for m in metrics] == [8, 16]
    assert (out / "rounds" / "000" / "selected.jsonl").is_file()
    assert (out / "rounds" / "001" / "adapter" / "adapter_model.safetensors").is_file()
    # resuming a finished run prints the table again and trains nothing
    again = star("run", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert [line.split()[:2] for line in again.stdout.splitlines()[2:]] == [["0", "8"], ["1", "16"]]


def test_sweep_runs_one_single_thread_run_per_core_costliest_first(monkeypatch, tmp_path, capsys):
    import star.experiment.sweep

    seen = {}

    def fake(root, pairs, run_args, jobs, threads, on_done):
        seen.update(pairs=[(p.strategy, p.seed) for p in pairs], jobs=jobs, threads=threads)
        return {p: 0 for p in pairs}

    monkeypatch.setattr(star.experiment.sweep, "sweep", fake)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    args = ["sweep", "--strategies", "random,pe,star", "--seeds", "0,1", "--out", str(tmp_path)]
    assert main([*args, "--model", "tiny-random"]) == 0
    assert seen["pairs"] == [
        ("star", 0), ("pe", 0), ("random", 0), ("star", 1), ("pe", 1), ("random", 1)
    ]  # fmt: skip
    assert seen["jobs"] == 2 and seen["threads"] is None  # sweep(): cores ÷ jobs = 1 thread
    assert "6 runs in" in capsys.readouterr().out


def test_a_yes_no_option_alone_means_yes():
    args = build_parser().parse_args(["run", "--out", "x", "--gradient-checkpointing"])
    assert getattr(args, "train.gradient_checkpointing") == "true"
    from star.cli.options import given

    assert given(args)["train.gradient_checkpointing"] is True
    args = build_parser().parse_args(["run", "--out", "x", "--gradient-checkpointing", "no"])
    assert given(args)["train.gradient_checkpointing"] is False


def test_a_batch_that_cannot_fit_is_refused_before_the_weights_load(tmp_path, capsys, monkeypatch):
    from star.engine import memory
    from star.engine import model as models

    monkeypatch.setattr(memory, "capacity", lambda on: 2**20)  # a 1 MiB device
    loaded = []
    monkeypatch.setattr(models, "load_weights", lambda config: loaded.append(config))
    code = main(["run", "--out", str(tmp_path / "r"), *SMALL, "--task", "trec"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and not loaded
    assert err.startswith("star: error: inference needs about ")  # tiny: the KV cache dominates
    assert "but this process has 0.0 GiB of the cpu: lower --batch-size" in err
    assert not (tmp_path / "r").exists()


def test_estimate_prints_each_part_of_a_runs_memory(capsys):
    from star.engine import memory
    from star.engine import model as models

    code = main(["estimate", *SMALL, "--task", "trec", "--batch-size", "4", "--dtype", "float32"])
    out = capsys.readouterr().out
    assert code == 0
    shape = memory.Shape.of(models.read_config("tiny-random"))
    weights = shape.params() * 4 / memory.GIB
    assert out.startswith("star estimate: trec on tiny-random, cpu, float32\n")
    assert f"weights                       {weights:.3f} GiB" in out
    assert "longest training batch: 4 rows × " in out
    lora = shape.lora_params(64, cfg.LoraConfig().target_modules) * 16 / memory.GIB
    assert f"LoRA + gradients + AdamW      {lora:.3f} GiB" in out
    for part in ("activations", "answer logits", "KV cache", "peak: "):
        assert part in out


def test_estimate_plans_a_gpu_run_from_a_machine_without_one(capsys):
    code = main(
        ["estimate", *SMALL, "--task", "trec", "--for", "cuda", "--quantize", "4bit",
         "--gradient-checkpointing"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0  # 4-bit is refused for a run here, not for a plan
    assert out.startswith("star estimate: trec on tiny-random, cuda, bfloat16, weights in 4-bit")
    assert "gradient checkpointing on" in out and "(plus the CUDA context, ~0.5 GiB)" in out


@pytest.mark.parametrize(
    "text,seeds", [("0,1,2", [0, 1, 2]), ("0-3", [0, 1, 2, 3]), ("0-2,7,2", [0, 1, 2, 7])]
)
def test_sweep_seeds_take_ranges(text, seeds):
    from star.cli.experiment import _seeds

    assert _seeds(text) == seeds


def test_bad_sweep_seeds_are_one_line(tmp_path, capsys):
    args = ["sweep", "--strategies", "random", "--seeds", "0-x", "--out", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == "star: error: --seeds must be integers or ranges like 0-9, got '0-x'\n"
