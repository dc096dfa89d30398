"""The engine's hot paths read results back to the host per batch or per run, never per
example: with every example in one batch, doubling the examples leaves the number of host
reads (`.item()`, `.tolist()`, `.cpu()`, `float()`, `int()`, `bool()` of a tensor) unchanged.
On a GPU each such read is a device sync that stalls the queue of kernels."""

import os
import sys
from collections import Counter
from contextlib import contextmanager

import pytest
import torch

from star.config import LoraConfig, TrainConfig
from star.engine import model as models
from star.engine.batching import Encoded
from star.engine.generate import generate
from star.engine.options import option_logprobs
from star.engine.scoring import embed, score
from star.engine.train import train_adapter

READS = ("item", "tolist", "cpu", "__float__", "__int__", "__bool__", "__index__")


@contextmanager
def counting_reads(own: bool = False):
    """Counts host reads of tensors while active; with `own`, only those star's code makes."""
    counts: Counter = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def wrap(name):
        original = originals[name]

        def counted(self, *args, **kwargs):
            if not own or f"{os.sep}star{os.sep}" in sys._getframe(1).f_code.co_filename:
                counts[name] += 1
            return original(self, *args, **kwargs)

        return counted

    for name in READS:
        setattr(torch.Tensor, name, wrap(name))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def _items(n: int) -> list[Encoded]:
    return [Encoded([5 + i % 7, 6, 7, 8], [9, 10 + i % 3]) for i in range(n)]


def _reads(work, n: int, own: bool) -> int:
    with counting_reads(own) as counts:
        work(n)
    return sum(counts.values())


@pytest.fixture
def adapter(tiny):
    peft = models.attach_lora(tiny[0], LoraConfig(r=4, dropout=0.1), seed=0)
    yield peft
    peft.unload()


def _same_for_more_examples(work, own: bool = False):
    few, many = _reads(work, 4, own), _reads(work, 8, own)
    assert few == many, f"host reads grew with the examples: {few} -> {many}"


def test_scoring_reads_per_batch(adapter, tiny):
    pad = tiny[1].pad_token_id
    _same_for_more_examples(lambda n: score(adapter, _items(n), pad, batch_tokens=10_000))
    with models.mc_dropout(adapter):
        _same_for_more_examples(
            lambda n: score(adapter, _items(n), pad, batch_tokens=10_000, passes=3)
        )


def test_embedding_reads_per_batch(adapter, tiny):
    pad = tiny[1].pad_token_id
    for last in (False, True):
        _same_for_more_examples(
            lambda n, last=last: embed(
                adapter, [x.prompt_ids for x in _items(n)], pad, 10_000, last=last
            )
        )


def test_option_evaluation_reads_per_batch(adapter, tiny):
    pad = tiny[1].pad_token_id
    options = [[9], [10, 11], [12]]
    _same_for_more_examples(
        lambda n: option_logprobs(
            adapter, [Encoded(x.prompt_ids, []) for x in _items(n)], [options] * n, pad, 10_000
        )
    )


def test_generation_reads_per_step_not_per_example(adapter, tiny):
    tokenizer = tiny[1]
    _same_for_more_examples(
        lambda n: generate(
            adapter, tokenizer, [Encoded(x.prompt_ids, []) for x in _items(n)], 3, batch_size=64
        )
    )


def test_training_reads_once_per_round(adapter, tiny):
    """2 and 4 steps read the same. Only star's own reads count: the optimiser reads its step
    counters, which live on the host (`capturable=False`), so they never sync a device."""
    pad = tiny[1].pad_token_id

    def train(n):
        config = TrainConfig(lr=1e-3, epochs=1, batch_size=2, b_decay=0.0)
        train_adapter(adapter, _items(n), pad, config, seed=0)

    _same_for_more_examples(train, own=True)
