"""star: data-efficient LoRA fine-tuning of LLMs with active learning (STAR and baselines)."""

import os

# star never downloads: every model is a local folder. Set before any Hugging Face import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

__version__ = "0.3.0"  # 0.3: task files, text-classification tasks, eval_mode; 0.2: projects
