"""The independent random streams of a run or project: every seeded draw comes from
(seed, round, stream), so adding a draw to one stream never shifts another, and a resumed run
draws exactly what an uninterrupted one draws."""

from __future__ import annotations

import numpy as np
import torch

INIT, TRAIN, LORA, SELECT, MC, SUBSAMPLE, INIT_SELECT, INIT_SUBSAMPLE, STOP = range(9)


def derived_seed(seed: int, round: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, round, stream]).generate_state(1)[0])


def stop_set(ids: list[str], size: int, seed: int) -> list[str]:
    """The stop set: a seeded sample of `size` pool ids (in pool order), fixed for the run."""
    generator = torch.Generator().manual_seed(derived_seed(seed, 0, STOP))
    picks = torch.randperm(len(ids), generator=generator)[: min(size, len(ids))].tolist()
    return [ids[i] for i in sorted(picks)]
