"""The frozen config: defaults, overrides, validation, YAML round trip, differences."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from star import __version__
from star import config as cfg
from star.api import make_config
from star.cli import build_parser, resolve_config
from star.errors import ConfigError
from star.method.strategies import configure


def build(overrides):
    """A config as every command resolves it: built, its strategy's defaults, its task checked."""
    return make_config(overrides)


def test_defaults_are_the_papers():
    c = configure(cfg.RunConfig())
    assert (c.lora.r, c.lora.alpha, c.lora.dropout) == (64, 16, 0.1)
    assert (c.train.lr, c.train.epochs, c.train.batch_size, c.train.grad_clip) == (
        1.5e-4,
        3,
        8,
        1.0,
    )
    assert c.uncertainty.target == "gold" and c.uncertainty.length_norm is False
    assert (c.uncertainty.dynamic_w0, c.uncertainty.dynamic_step) == (0.1, 0.1)
    assert (c.loop.init_size, c.loop.query_size, c.loop.rounds) == (500, 500, 10)
    assert (c.data.max_prompt_tokens, c.data.max_target_tokens) == (128, 256)
    assert c.star_version == __version__
    assert c.loop.init_by == "random"


def test_strategy_defaults_resolve_unset_options():
    star = build({"strategy": "star"})
    assert (star.train.b_decay, star.uncertainty.mc_passes) == (0.5, 3)
    plain = build({"strategy": "pe"})
    assert (plain.train.b_decay, plain.uncertainty.mc_passes) == (0.0, 1)
    ablation = build({"strategy": "star", "train.b_decay": 0.0, "uncertainty.mc_passes": 1})
    assert (ablation.train.b_decay, ablation.uncertainty.mc_passes) == (0.0, 1)
    free = build({"strategy": "pe-cluster"})
    assert (free.uncertainty.target, free.uncertainty.length_norm, free.loop.init_by) == (
        "generated",
        True,
        "strategy",
    )
    gold = build({"strategy": "pe-cluster", "uncertainty.target": "gold"})
    assert gold.uncertainty.target == "gold"  # a setting given wins over the strategy's


def test_config_knows_no_strategies():
    """The method sits above the settings: config names no strategy (test_architecture: nor
    does it import one)."""
    with pytest.raises(ValueError, match="cannot set train.lr"):
        cfg.with_defaults(cfg.RunConfig(), {"train.lr": 1.0})


def test_mc_dropout_cannot_be_silently_off():
    with pytest.raises(ConfigError, match="mc_passes > 1 needs lora.dropout > 0"):
        build({"strategy": "star", "lora.dropout": 0.0})
    with pytest.raises(ConfigError, match="bald needs uncertainty.mc_passes of at least 2"):
        build({"strategy": "bald", "uncertainty.mc_passes": 1})


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.RunConfig().seed = 3


def test_build_applies_dotted_overrides_and_round_trips():
    c = cfg.build({"loop.rounds": 3, "lora.target_modules": ("q_proj",), "task": "boolq"})
    assert (c.loop.rounds, c.lora.target_modules, c.task) == (3, ("q_proj",), "boolq")
    again = cfg.from_dict(yaml.safe_load(yaml.safe_dump(c.to_dict())), "x")
    assert again == c


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"task": "mnist"}, "unknown task 'mnist'; choose from: gsm8k, boolq, obqa"),
        ({"task": "notes.txt"}, "or give a labelled .jsonl/.csv file"),
        ({"strategy": "magic"}, "unknown strategy 'magic'"),
        ({"loop.rounds": 0}, "loop.rounds must be at least 1"),
        ({"train.lr": -1.0}, "train.lr must not be negative"),
        ({"lora.dropout": 1.0}, r"lora.dropout must be in \[0, 1\)"),
        ({"model.dtype": "int8"}, "unknown model.dtype 'int8'"),
        ({"loop.schedule": "64,32"}, r"loop.schedule must be positive and increasing"),
        ({"loop.schedule": "64,x"}, "loop.schedule must be a comma-separated list of int"),
        ({"train.warmup": 1.0}, r"train.warmup must be in \[0, 1\)"),
        ({"data.holdout": 0.0}, r"data.holdout must be in \(0, 1\)"),
        ({"inference.eval_mode": "vibes"}, "unknown inference.eval_mode 'vibes'"),
    ],
)
def test_invalid_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build(overrides)


def test_unknown_and_mistyped_keys_are_errors():
    with pytest.raises(ConfigError, match="f.yaml: unknown key.* loop.rund"):
        cfg.from_dict({"loop": {"rund": 3}}, "f.yaml")
    with pytest.raises(ConfigError, match="f.yaml: loop.rounds must be int, got 'three'"):
        cfg.from_dict({"loop": {"rounds": "three"}}, "f.yaml")
    with pytest.raises(ConfigError, match="loop.rounds must be int, got 2.5"):
        cfg.from_dict({"loop": {"rounds": 2.5}}, "f.yaml")


def test_a_schedule_sets_the_round_sizes():
    c = cfg.build({"loop.schedule": "64,128,256", "loop.rounds": 9})
    assert c.loop.sizes() == [64, 128, 256]
    assert (c.loop.init_size, c.loop.query_size, c.loop.rounds) == (64, 64, 3)
    assert cfg.build(
        {"loop.init_size": 8, "loop.query_size": 4, "loop.rounds": 3}
    ).loop.sizes() == [
        8,
        12,
        16,
    ]
    saved = cfg.from_dict(yaml.safe_load(yaml.safe_dump(c.to_dict())), "x")
    assert saved == c and saved.to_dict()["loop"]["schedule"] == [64, 128, 256]


def test_differences_lists_dotted_keys():
    a = cfg.build({})
    b = cfg.build({"loop.rounds": 2, "seed": 7})
    assert cfg.differences(a, b) == ["loop.rounds", "seed"]
    assert cfg.differences(a, a) == []


def test_command_line_overrides_file_overrides_defaults(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("task: boolq\nseed: 4\nloop:\n  rounds: 5\n  init_size: 16\n")
    args = build_parser().parse_args(
        [
            "run",
            "--out",
            str(tmp_path / "run"),
            "--config",
            str(file),
            "--rounds",
            "2",
            "--lora-targets",
            "q_proj,v_proj",
        ]
    )
    c = resolve_config(args)
    assert (c.task, c.seed, c.loop.rounds, c.loop.init_size) == ("boolq", 4, 2, 16)
    assert c.lora.target_modules == ("q_proj", "v_proj")
    assert c.loop.query_size == cfg.LoopConfig().query_size
    args = build_parser().parse_args(["run", "--out", "x", "--length-norm", "yes"])
    assert resolve_config(args).uncertainty.length_norm is True


def test_every_option_has_a_flag_and_help():
    flags = [o.flag for o in cfg.options()]
    assert len(flags) == len(set(flags))
    for needed in (
        "task",
        "strategy",
        "model",
        "init-size",
        "query-size",
        "rounds",
        "pool-size",
        "eval-size",
        "seed",
        "lora-r",
        "lora-alpha",
        "lora-dropout",
        "lr",
        "epochs",
        "batch-size",
        "b-decay",
    ):
        assert needed in flags
    assert all(o.help for o in cfg.options())


CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.mark.parametrize(
    "path",
    sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent.name != "accelerate"),
    ids=lambda p: p.name,
)
def test_shipped_configs_are_valid(path):
    from star.config import read_tree
    from star.tasks.registry import TASKS
    from star.tasks.resolve import resolve

    config = cfg.build({}, read_tree(path))
    resolved, _ = resolve(config)  # the task, its template and evaluation mode all check out
    if path.parent.name.startswith("paper"):  # the paper's settings: evaluated as the authors
        assert resolved.inference.eval_mode == "generate"
    if path.parent.name == "paper":  # the paper's budget; the user supplies the 7B model
        assert (config.loop.init_size, config.loop.query_size, config.lora.r) == (500, 500, 64)
    else:
        assert config.model.name == "smollm2-135m" and config.task in TASKS
    if path.parent.name == "ablations":
        assert config.strategy in ("star", "pe", "pe-subtract")


@pytest.mark.parametrize(
    "path", sorted((CONFIGS / "accelerate").glob("*.yaml")), ids=lambda p: p.name
)
def test_accelerate_configs_load_in_accelerate(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_processes >= 1 and config.mixed_precision in ("no", "bf16")
