"""Data parallelism over torch.distributed, set up by accelerate, launched with `torchrun` (or
`accelerate launch`); without a launcher there is one process and every helper is a no-op.

Every process holds the whole model and runs the same loop, so every process makes the same
selections from the same gathered scores. Lists of work (pool scoring, evaluation) are cut into
contiguous shards, one per process, and gathered back in rank order, which is the original
order. Training splits every batch between the processes and DDP sums their gradients, so each
optimiser step sees the same examples as in one process. Only the main process writes files.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import broadcast_object_list, gather_object

T = TypeVar("T")
R = TypeVar("R")


def state() -> PartialState:
    """The process group (created from the launcher's environment on first use)."""
    return PartialState(cpu=_cpu_only())


@functools.cache
def accelerator() -> Accelerator:
    return Accelerator(cpu=_cpu_only())


def _cpu_only() -> bool:
    # accelerate starts a gloo group for torchrun's processes only when told it runs on CPUs
    return not torch.cuda.is_available()


def is_main() -> bool:
    return state().is_main_process


def world_size() -> int:
    return state().num_processes


def device() -> torch.device:
    return state().device


def share(items: Sequence[T]) -> list[T]:
    """This process's contiguous share of `items` (the first processes get one more)."""
    with state().split_between_processes(list(items)) as part:
        return list(part)


def map_shards(items: Sequence[T], work: Callable[[list[T]], R], join: Callable[[list[R]], R]) -> R:
    """`work` on this process's share of `items`; the shares' results joined in rank order, on
    every process. With one process: `work(items)`."""
    if world_size() == 1:
        return work(list(items))
    return join(gather_object([work(share(items))]))


def concat(parts: list[list[T]]) -> list[T]:
    """Gathered lists, one after another."""
    return [x for part in parts for x in part]


def from_main(value: T) -> T:
    """The main process's `value`, on every process."""
    if world_size() == 1:
        return value
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]
