"""The independent random streams of a run or project: every seeded draw comes from
(seed, round, stream), so adding a draw to one stream never shifts another, and a resumed run
draws exactly what an uninterrupted one draws."""

from __future__ import annotations

import numpy as np
import torch

INIT, TRAIN, LORA, SELECT, MC, SUBSAMPLE, INIT_SELECT, INIT_SUBSAMPLE, STOP = range(9)


def derived_seed(seed: int, round: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, round, stream]).generate_state(1)[0])


def generator(seed: int, round: int, stream: int) -> torch.Generator:
    """A torch generator of one stream."""
    return torch.Generator().manual_seed(derived_seed(seed, round, stream))


def subset(n: int, size: int | None, draw: torch.Generator) -> list[int]:
    """Positions of a seeded random `size` of n things, in their order (all if size is None or
    at least n): the initial labels, the stop set, the candidates scored in a round."""
    if size is None or size >= n:
        return list(range(n))
    return sorted(torch.randperm(n, generator=draw)[:size].tolist())


def stop_set(ids: list[str], size: int, seed: int) -> list[str]:
    """The stop set: a seeded sample of `size` pool ids (in pool order), fixed for the run."""
    return [ids[i] for i in subset(len(ids), size, generator(seed, 0, STOP))]
