"""The run configuration: one frozen, typed object, saved resolved into every run directory.

Every field carries its help text, so the CLI options, the YAML file and the saved
`config.yaml` all come from this one place. Defaults are the paper's values (method.md §3)
except for the sizes, which a user always sets for their budget.

Longer than star's other modules (~480 lines) on purpose: about half of it is the options' help
texts, and the reading, coercing and comparing of options belongs beside their one definition.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from star.errors import ConfigError
from star.files import read_yaml
from star.version import __version__


def _opt(
    default: Any,
    help: str,
    flag: str | None = None,
    choices: tuple | None = None,
    cli: bool = True,
) -> Any:
    """A config field; cli=False: resolved by star and saved, never given on the command line."""
    return field(
        default=default, metadata={"help": help, "flag": flag, "choices": choices, "cli": cli}
    )


@dataclass(frozen=True)
class ModelConfig:
    name: str = _opt(
        "smollm2-135m",
        "base model: 'smollm2-135m' (embedded), 'tiny-random' (tests) or a local HF folder",
        flag="model",
    )
    dtype: str = _opt(
        "auto",
        "weights dtype; auto = bfloat16 on GPUs and AMX CPUs, float32 elsewhere",
        choices=("auto", "float32", "bfloat16"),
    )
    quantize: str = _opt(
        "none",
        "4bit: QLoRA, the base weights stored as 4-bit NF4 (bitsandbytes, CUDA GPUs only; "
        "`pip install 'star[gpu]'`) and LoRA trained on top in the compute dtype",
        choices=("none", "4bit"),
    )
    attention: str = _opt(
        "auto",
        "attention kernel: sdpa (PyTorch's fused attention), flash (FlashAttention 2, needs "
        "the flash-attn package and a GPU), eager; auto = flash where installed on a GPU, "
        "else sdpa",
        choices=("auto", "sdpa", "flash", "eager"),
    )


@dataclass(frozen=True)
class DataConfig:
    pool_size: int | None = _opt(
        None,
        "unlabelled pool: this many train rows (seeded); all if unset (a task file with "
        "fewer: all it has)",
    )
    eval_size: int | None = _opt(
        None,
        "evaluation rows from the test split (fixed); all if unset (a task file with fewer: "
        "all it has)",
    )
    test: str | None = _opt(
        None,
        "task file only: a labelled file of evaluation rows (same columns, no text in common "
        "with the task file); unset: a held-out split of the task file (--holdout)",
        flag="test",
    )
    holdout: float = _opt(
        0.2,
        "task file without --test: this fraction of its distinct texts (seeded, the same for "
        "every run seed) is the evaluation split, never in the pool",
    )
    id_field: str | None = _opt(None, "task file: column of the example id (unset: id)")
    prompt_field: str | None = _opt(None, "task file: column of the text (unset: prompt)")
    answer_field: str | None = _opt(None, "task file: column of the label (unset: answer)")
    choices_field: str | None = _opt(
        None, "task file: column of a row's own options, a list (unset: choices)"
    )
    labels: tuple[str, ...] = _opt(
        (),
        "task file: the closed label set, comma-separated; unset: detected (at most 100 "
        "distinct answers, and at most a third as many as rows), else free answers",
    )
    template: str | None = _opt(
        None,
        "prompt template: {prompt} is the row's text, {labels} the label set; unset: the "
        "task's own (task files: '{prompt}\\nAnswer with one of: {labels}.\\nAnswer:' up to 20 "
        "labels, '{prompt}\\nAnswer:' otherwise)",
    )
    task_sha256: str | None = _opt(None, "checksum of the task file", cli=False)
    test_sha256: str | None = _opt(None, "checksum of the --test file", cli=False)
    max_prompt_tokens: int = _opt(128, "prompts are cut to this many tokens, keeping the end")
    max_target_tokens: int = _opt(256, "answers are cut to this many tokens")


STOP_SIZE = 100  # stop-set examples when `loop.stop_size` is unset and a stop set is needed


@dataclass(frozen=True)
class LoopConfig:
    init_size: int = _opt(500, "round 0: this many random pool examples are labelled")
    query_size: int = _opt(500, "examples labelled after each round but the last")
    rounds: int = _opt(10, "trained rounds (the paper: 10)")
    schedule: tuple[int, ...] = _opt(
        (),
        "labelled-set size of every round, comma-separated and increasing (e.g. 64,128,256); "
        "replaces init_size, query_size and rounds",
    )
    max_candidates: int | None = _opt(
        None,
        "approximation: score only a seeded random subset of this many unlabelled candidates "
        "per round (baal's max_sample); unset: all (exact)",
    )
    init_by: str | None = _opt(
        None,
        "who chooses round 0's labels: random (the paper) or the strategy, on the base model "
        "(as a labelling project's first `star next`); unset: the strategy's default",
        choices=("random", "strategy"),
    )
    stop: str | None = _opt(
        None,
        "stopping rule that ends a simulated run early: kappa (the model's answers on the stop "
        "set stable between rounds) or uncertainty (the model sure of them); unset: the whole "
        "budget",
        choices=("kappa", "uncertainty"),
    )
    stop_size: int | None = _opt(
        None,
        "pool examples the model answers after every round, for the stopping rules; unset: "
        f"{STOP_SIZE} in a labelling project or with --stop, none otherwise",
    )
    stop_threshold: float | None = _opt(
        None, "the stopping rule's threshold; unset: kappa 0.99 (mean of 3), uncertainty 0.05"
    )

    def stop_examples(self, project: bool = False) -> int:
        """Stop-set size: `stop_size`, else STOP_SIZE where a stop set is needed (a labelling
        project, whose `status` reports the rules; a run with a rule), else 0."""
        if self.stop_size is not None:
            return self.stop_size
        return STOP_SIZE if project or self.stop else 0

    def sizes(self) -> list[int]:
        """Labelled examples trained on in each round."""
        if self.schedule:
            return list(self.schedule)
        return [self.init_size + self.query_size * k for k in range(self.rounds)]


@dataclass(frozen=True)
class LoraConfig:
    r: int = _opt(64, "LoRA rank", flag="lora-r")
    alpha: int = _opt(16, "LoRA alpha (scale = alpha / r)", flag="lora-alpha")
    dropout: float = _opt(0.1, "LoRA dropout on the A-branch input", flag="lora-dropout")
    target_modules: tuple[str, ...] = _opt(
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        "comma-separated module names that get LoRA adapters",
        flag="lora-targets",
    )


@dataclass(frozen=True)
class UncertaintyConfig:
    target: str | None = _opt(
        None,
        "answer the uncertainty is measured on: the gold label (paper) or the model's own greedy "
        "answer (label-free); unset: the strategy's default (gold for the paper's strategies)",
        choices=("gold", "generated"),
    )
    mc_passes: int | None = _opt(
        None,
        "Monte-Carlo dropout passes K for the tuned model (1 = deterministic); "
        "unset: 3 for star and bald, 1 otherwise",
    )
    length_norm: bool | None = _opt(
        None,
        "average PE/ME over answer tokens instead of summing (the paper sums); unset: the "
        "strategy's default (sums for the paper's strategies)",
    )
    dynamic_w0: float = _opt(0.1, "dynamic strategies: weight of the tuned model in round 0")
    dynamic_step: float = _opt(0.1, "dynamic strategies: weight added per round (capped at 1)")
    star_measure: str = _opt("pe", "measure STAR mixes dynamically", choices=("pe", "entropy"))
    embedding: str | None = _opt(
        None,
        "what the spreading selectors (cluster, k-means++, badge) measure distances on: prompt "
        "(the base model's mean-pooled prompt), answer (the tuned model's hidden state where the "
        "answer starts), gradient (BADGE's gradient embedding of the label loss, closed label "
        "sets); unset: the strategy's default (gradient for badge, prompt otherwise)",
        choices=("prompt", "answer", "gradient"),
    )
    mc_top: int | None = _opt(
        None,
        "approximation, two-stage MC: one deterministic pass over every candidate, the K "
        "Monte-Carlo passes only over the this many it ranks most uncertain; unset: all (exact)",
    )


@dataclass(frozen=True)
class TrainConfig:
    lr: float = _opt(1.5e-4, "AdamW peak learning rate, linear decay to 0")
    warmup: float = _opt(
        0.0, "fraction of the steps over which the rate rises linearly from 0 (paper: 0)"
    )
    epochs: int = _opt(
        3, "epochs over the labelled set each round (0: no training, i.e. zero-shot evaluation)"
    )
    steps: int | None = _opt(
        None,
        "optimiser steps each round instead of whole epochs, whatever the labelled set's size "
        "(the last epoch may be partial): small sets get many epochs, large ones few; unset: "
        "epochs",
    )
    batch_size: int = _opt(8, "training examples per optimiser step")
    batch_tokens: int | None = _opt(
        None,
        "a training batch by tokens instead of rows: as many length-grouped rows as fit this "
        "many tokens after padding (rows × the longest), so every step needs the same memory "
        "whatever the lengths; unset: batch_size rows",
        flag="train-batch-tokens",
    )
    gradient_checkpointing: bool = _opt(
        False,
        "recompute each decoder layer's activations in the backward pass instead of keeping "
        "them: activation memory drops to about one layer's (see `star estimate`) for about "
        "a third more training time",
    )
    grad_clip: float = _opt(1.0, "gradient-norm clipping (0 = off)")
    b_decay: float | None = _opt(
        None,
        "hybrid regulariser: decoupled weight decay on lora_B (0 on lora_A); 0 = off; "
        "unset: 0.5 for star, 0 otherwise",
    )


@dataclass(frozen=True)
class InferenceConfig:
    batch_tokens: int | None = _opt(
        None,
        "token budget of one forward pass, after padding (scoring batches, generation "
        "prefill); unset: 512 on CPUs, 8192 on GPUs (docs/performance.md). Scores do not "
        "depend on it",
    )
    eval_batch_size: int = _opt(
        96,
        "prompts generated together (evaluation, the model's answers to pool items; "
        "docs/performance.md)",
    )
    eval_mode: str | None = _opt(
        None,
        "evaluation: 'options' scores p(label | prompt) for every label (or the row's choices), "
        "renormalised; 'generate' generates greedily and extracts the answer; unset: options "
        "for tasks with a closed label set, generate otherwise",
        choices=("options", "generate"),
    )
    signal_cache: bool = _opt(
        True,
        "keep base-model signals under $STAR_CACHE/signals, shared by every run on the "
        "machine (exact: the same numbers are reused)",
    )
    reuse_training: bool = _opt(
        True,
        "a round whose training inputs (base weights, LoRA and training settings, seeds, the "
        "labelled examples in order) match a round already trained in this run directory or "
        "another in the same folder (a sweep) loads that adapter instead of training again: "
        "a sweep's strategies share round 0 (exact: the same adapter)",
    )
    merge_lora: bool | None = _opt(
        None,
        "fold the adapter into the weights for deterministic passes (evaluation, plain "
        "scoring, answers); unset: on GPUs only, where it is faster (docs/performance.md)",
    )


@dataclass(frozen=True)
class RunConfig:
    task: str = _opt(
        "gsm8k",
        "a built-in task (gsm8k, boolq, obqa, mix, trec, ag_news, sst2, banking77; see `star "
        "tasks`) or a labelled .jsonl/.csv file",
    )
    strategy: str = _opt("random", "query strategy (see `star strategies`)")
    seed: int = _opt(0, "seed for the initial sample, the pool and training")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    uncertainty: UncertaintyConfig = field(default_factory=UncertaintyConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    star_version: str = __version__

    def __post_init__(self) -> None:
        # the task's name is checked by star.tasks (`check_task`), which knows the tasks
        if not 0 <= self.train.warmup < 1:
            raise ConfigError(f"train.warmup must be in [0, 1), got {self.train.warmup}")
        self._resolve_schedule()
        if not 0 < self.data.holdout < 1:
            raise ConfigError(f"data.holdout must be in (0, 1), got {self.data.holdout}")
        for o in options():
            if o.choices and get_path(self, o.path) is not None:
                _check_choice(o.path, get_path(self, o.path), o.choices)
        for name, value in flat_items(self):
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{name} must not be negative, got {value}")
        for name in (
            "loop.rounds",
            "loop.init_size",
            "train.batch_size",
            "lora.r",
            "inference.batch_tokens",
            "inference.eval_batch_size",
            "loop.max_candidates",
            "uncertainty.mc_top",
            "train.steps",
            "train.batch_tokens",
        ):
            value = get_path(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if not 0 <= self.lora.dropout < 1:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.lora.dropout}")
        if self.loop.rounds > 1 and self.loop.query_size < 1:
            raise ConfigError("loop.query_size must be at least 1 when loop.rounds > 1")
        passes = self.uncertainty.mc_passes
        if passes is not None and passes < 1:
            raise ConfigError("uncertainty.mc_passes must be at least 1")
        if passes is not None and passes > 1 and self.lora.dropout == 0:
            raise ConfigError(
                "uncertainty.mc_passes > 1 needs lora.dropout > 0: with no dropout every "
                "Monte-Carlo pass would be identical"
            )

    def _resolve_schedule(self) -> None:
        """A schedule sets init_size, query_size (its first step) and rounds, so that every
        reader of the loop settings agrees; query sizes then come from `sizes()`."""
        sizes = self.loop.schedule
        if not sizes:
            return
        numbers = list(sizes)
        if numbers[0] < 1 or any(b <= a for a, b in zip(numbers, numbers[1:], strict=False)):
            raise ConfigError(f"loop.schedule must be positive and increasing, got {numbers}")
        step = numbers[1] - numbers[0] if len(numbers) > 1 else 0
        loop = dataclasses.replace(
            self.loop,
            init_size=numbers[0],
            query_size=step,
            rounds=len(numbers),
        )
        object.__setattr__(self, "loop", loop)  # frozen: set once, here

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-ready dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))


# options a strategy may set (`Strategy.defaults`) and what they are when it does not
STRATEGY_SET = {
    "train.b_decay": 0.0,
    "uncertainty.mc_passes": 1,
    "uncertainty.target": "gold",
    "uncertainty.length_norm": False,
    "loop.init_by": "random",
    "uncertainty.embedding": "prompt",
}


def with_defaults(config: RunConfig, defaults: Mapping[str, Any]) -> RunConfig:
    """`config` with every option of STRATEGY_SET left unset taken from `defaults` (a
    strategy's), else the fallback, so the saved config is explicit. The registry of
    strategies lives above this module (`star.method.strategies.configure` calls this)."""
    unknown = sorted(set(defaults) - set(STRATEGY_SET))
    if unknown:
        raise ValueError(f"a strategy cannot set {', '.join(unknown)}")
    if all(get_path(config, path) is not None for path in STRATEGY_SET):
        return config  # already explicit (a saved config, or one configured before)
    tree = config.to_dict()
    for path, fallback in STRATEGY_SET.items():
        if get_path(config, path) is None:
            section, name = path.split(".")
            tree[section][name] = defaults.get(path, fallback)
    return from_dict(tree, "config")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose from: {', '.join(choices)}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Option:
    """One configurable field, as the CLI and the YAML file see it."""

    path: str  # dotted, e.g. "loop.init_size"
    flag: str  # CLI spelling without dashes, e.g. "init-size"
    type: type
    help: str
    default: Any
    choices: tuple | None
    cli: bool = True  # False: resolved by star, not a command-line option
    item: type = str  # element type of a tuple option


def options(cls: type = RunConfig, prefix: str = "") -> Iterator[Option]:
    """Every leaf field of the config, in declaration order (star_version excluded)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "star_version":
            continue
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from options(hint, f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = f.metadata.get("flag") or f.name.replace("_", "-")
        yield Option(
            f"{prefix}{f.name}",
            flag,
            _leaf_type(hint),
            f.metadata["help"],
            default,
            f.metadata.get("choices"),
            f.metadata.get("cli", True),
            (typing.get_args(hint) or (str,))[0] if _leaf_type(hint) is tuple else str,
        )


def _leaf_type(hint: Any) -> type:
    """`int | None` -> int, `tuple[str, ...]` -> tuple."""
    if isinstance(hint, types.UnionType):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    return typing.get_origin(hint) or hint


def coerce(option: Option, value: Any, where: str) -> Any:
    """Turn a YAML or command-line value into the field's type, or say what is wrong."""
    if value is None:
        return None
    try:
        if option.type is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(option.item(str(v).strip()) for v in items if str(v).strip())
        if option.type is int and isinstance(value, float | bool):
            raise ValueError
        if option.type is float and isinstance(value, bool):
            raise ValueError
        if option.type is bool and isinstance(value, str):
            words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
            return words[value.strip().lower()]
        return option.type(value)
    except (TypeError, ValueError, KeyError):
        kind = option.type.__name__
        if option.type is tuple:
            kind = f"a comma-separated list of {option.item.__name__}"
        raise ConfigError(f"{where}: {option.path} must be {kind}, got {value!r}") from None


def build(overrides: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> RunConfig:
    """A config from a nested dict (a YAML file; defaults if None) plus dotted-path overrides.

    Works on the raw tree, so options a strategy fills in (unset in the tree) are resolved
    for the final strategy, not for the base's.
    """
    tree = copy.deepcopy(dict(base or {}))
    tree.pop("star_version", None)  # a new config is always this version's
    for path, value in overrides.items():
        node = tree
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return from_dict(tree, "config")


def from_dict(tree: Mapping[str, Any], where: str) -> RunConfig:
    """Validate a nested dict (YAML) into a RunConfig; unknown keys are errors, not ignored."""
    known = {o.path: o for o in options()}
    flat = dict(_flatten(tree))
    version = flat.pop("star_version", __version__)
    unknown = sorted(set(flat) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {"star_version": str(version)}
    for path, value in flat.items():
        value = coerce(known[path], value, where)
        if "." in path:
            section, name = path.split(".", 1)
            sections.setdefault(section, {})[name] = value
        else:
            top[path] = value
    hints = typing.get_type_hints(RunConfig)
    for section, values in sections.items():
        top[section] = hints[section](**values)
    return RunConfig(**top)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def flat_items(config: RunConfig) -> Iterator[tuple[str, Any]]:
    """(dotted path, value) for every field, star_version included."""
    yield from _flatten(config.to_dict())


def get_path(config: RunConfig, path: str) -> Any:
    value: Any = config
    for part in path.split("."):
        value = getattr(value, part)
    return value


def differences(a: RunConfig, b: RunConfig) -> list[str]:
    """Dotted paths whose values differ, for the 'different config' refusal."""
    fa, fb = dict(flat_items(a)), dict(flat_items(b))
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


def read_tree(path: Path) -> dict:
    """The raw mapping of a YAML config file, checked against this version's options (errors
    name the file)."""
    tree = read_yaml(path)
    from_dict(tree, str(path))
    return tree
