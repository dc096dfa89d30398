"""star: data-efficient LoRA fine-tuning of LLMs with active learning (STAR and baselines)."""

import os

# star never downloads: every model is a local folder. Set before any Hugging Face import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from star.version import __version__ as __version__  # noqa: E402  (after the environment)

# The public API (star.api, docs/api.md), imported on first use so `star --help` stays quick.
_API = (
    "Fields",
    "Project",
    "RunConfig",
    "SequenceScores",
    "Signals",
    "init_project",
    "list_strategies",
    "make_config",
    "open_project",
    "read_metrics",
    "register",
    "run",
)


def __getattr__(name: str):
    if name in _API:
        from star import api

        return getattr(api, name)
    raise AttributeError(f"module 'star' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
