"""Training: the loss equals plain padded cross-entropy, the hybrid regulariser decays lora_B
only, and a round of training lowers the loss."""

import pytest
import torch
import torch.nn.functional as F

from star.config import LoraConfig, TrainConfig
from star.engine import model as models
from star.engine.batching import IGNORE, Encoded, collate, encode
from star.engine.train import answer_loss, optimizer_groups, train_adapter
from star.tasks.registry import load_split


@pytest.fixture
def adapter(tiny):
    peft = models.attach_lora(tiny[0], LoraConfig(r=4, target_modules=("q_proj",)), seed=0)
    yield peft
    peft.unload()


def test_b_decay_shrinks_lora_b_and_leaves_lora_a(adapter):
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if "lora_B" in name:
                p.fill_(1.0)
    before = {n: p.detach().clone() for n, p in adapter.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(optimizer_groups(adapter, b_decay=0.5), lr=0.1)
    for p in before:
        dict(adapter.named_parameters())[p].grad = torch.zeros_like(before[p])
    optimizer.step()  # a zero-gradient step: only decoupled weight decay moves anything
    after = dict(adapter.named_parameters())
    names = sorted(before)
    assert any("lora_A" in n for n in names) and any("lora_B" in n for n in names)
    for n in names:
        if "lora_B" in n:
            assert torch.allclose(after[n], before[n] * (1 - 0.1 * 0.5))
        else:
            assert torch.equal(after[n], before[n])


def test_training_lowers_the_answer_loss(tiny):
    base, tok = tiny
    adapter = models.attach_lora(base, LoraConfig(r=8, dropout=0.0), seed=0)
    items = [Encoded([5, 6, 7, 8], [9, 10, tok.eos_token_id]), Encoded([11, 12], [13, 14])] * 4
    batch = collate(items, tok.pad_token_id)
    with torch.no_grad():
        start = answer_loss(adapter, batch).item()
    config = TrainConfig(lr=2e-2, epochs=8, batch_size=4, b_decay=0.0)
    last_epoch = train_adapter(adapter, items, tok.pad_token_id, config, seed=0)
    with torch.no_grad():
        end = answer_loss(adapter.eval(), batch).item()
    adapter.unload()
    assert end < start - 1.0 and last_epoch < start  # random init: start ≈ ln(49152) ≈ 10.8


def test_schedule_is_sized_from_the_training_set(tiny, adapter, monkeypatch):
    """The authors sized it from the test set; here 10 items, batch 4, 2 epochs -> 6 steps."""
    import star.engine.train

    sizes = []
    real = star.engine.train.get_linear_schedule_with_warmup

    def spy(optimizer, warmup, total):
        sizes.append((warmup, total))
        return real(optimizer, warmup, total)

    monkeypatch.setattr(star.engine.train, "get_linear_schedule_with_warmup", spy)
    items = [Encoded([5, 6], [7])] * 10
    train_adapter(
        adapter, items, tiny[1].pad_token_id, TrainConfig(epochs=2, batch_size=4, b_decay=0.0), 0
    )
    assert sizes == [(0, 6)]


@pytest.mark.parametrize("steps,epochs", [(2, 1), (5, 2), (7, 3)])
def test_a_step_count_takes_that_many_steps_over_whole_and_cut_epochs(
    tiny, adapter, monkeypatch, steps, epochs
):
    """10 items, batch 4: 3 steps an epoch; `steps` of them, the last epoch cut short, the
    schedule sized by the steps. The batches are those of whole epochs, in order."""
    import star.engine.train

    taken, drawn, sizes = [], [], []
    real_batches = star.engine.train.length_grouped_batches
    real_schedule = star.engine.train.get_linear_schedule_with_warmup

    def batches(*args):
        drawn.append(real_batches(*args))
        return drawn[-1]

    def schedule(optimizer, warmup, total):
        sizes.append(total)
        return real_schedule(optimizer, warmup, total)

    monkeypatch.setattr(star.engine.train, "length_grouped_batches", batches)
    monkeypatch.setattr(star.engine.train, "get_linear_schedule_with_warmup", schedule)
    monkeypatch.setattr(star.engine.train, "crash_point", lambda name: taken.append(name))
    items = [Encoded([5, 6], [7])] * 10
    config = TrainConfig(epochs=99, steps=steps, batch_size=4, b_decay=0.0)
    loss = train_adapter(adapter, items, tiny[1].pad_token_id, config, 0)
    assert len(taken) == steps and sizes == [steps] and len(drawn) == epochs
    assert loss == loss  # a number: the last (possibly cut) epoch's mean


def test_answer_loss_equals_padded_cross_entropy_over_all_positions(tiny):
    """Projecting only answer positions changes the work, not the loss."""
    model, tok = tiny
    items = encode(load_split("gsm8k", "train")[:2] + load_split("obqa", "train")[:3], tok, 64, 12)
    batch = collate(items, tok.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        plain = F.cross_entropy(
            logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten(), ignore_index=IGNORE
        )
        assert torch.allclose(answer_loss(model, batch), plain, atol=1e-5)


def trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    "settings",
    [
        dict(epochs=0),  # zero-shot: nothing is trained
        dict(epochs=1, batch_size=8, warmup=0.9),  # one step, all of it warm-up: its rate is 0
    ],
)
def test_no_training_and_full_warmup_leave_the_adapter_untouched(adapter, tiny, settings):
    import math

    items = encode(load_split("trec", "train")[:4], tiny[1], 64, 4)
    before = trainable(adapter)
    loss = train_adapter(
        adapter, items, tiny[1].pad_token_id, TrainConfig(lr=0.1, b_decay=0.0, **settings), 0
    )
    assert math.isnan(loss) == (settings["epochs"] == 0)
    after = trainable(adapter)
    assert all(torch.equal(after[n], before[n]) for n in before)
    moved = train_adapter(
        adapter, items, tiny[1].pad_token_id, TrainConfig(lr=0.1, epochs=1, b_decay=0.0), 0
    )
    assert math.isfinite(moved)
    assert any(not torch.equal(p, before[n]) for n, p in trainable(adapter).items())


def test_gradient_checkpointing_trains_the_same_adapter(tiny):
    """Recomputing activations replays the dropout masks: the same steps, the same weights."""
    base, tok = tiny
    items = [Encoded([5, 6, 7, 8], [9, 10]), Encoded([11, 12], [13, 14]), Encoded([3], [4])] * 3
    weights = []
    for recompute in (False, True):
        adapter = models.attach_lora(base, LoraConfig(r=4, dropout=0.1), seed=0)
        config = TrainConfig(
            lr=1e-2, epochs=2, batch_size=4, b_decay=0.0, gradient_checkpointing=recompute
        )
        loss = train_adapter(adapter, items, tok.pad_token_id, config, seed=0)
        weights.append(
            (loss, [p.detach().clone() for p in adapter.parameters() if p.requires_grad])
        )
        assert not any(getattr(m, "gradient_checkpointing", False) for m in adapter.modules())
        adapter.unload()
    (loss_plain, plain), (loss_recomputed, recomputed) = weights
    assert loss_recomputed == pytest.approx(loss_plain, rel=1e-5)
    for a, b in zip(plain, recomputed, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_token_batches_set_the_steps_of_an_epoch(tiny, adapter, monkeypatch):
    """6 rows of 3 tokens and 2 of 9, 17 tokens a batch: [3,3,3,3,3] [3] [9] [9] (two 9s
    would be 18): 4 steps an epoch, 8 in 2 epochs, the schedule sized so."""
    import star.engine.train

    sizes = []
    real = star.engine.train.get_linear_schedule_with_warmup

    def spy(optimizer, warmup, total):
        sizes.append(total)
        return real(optimizer, warmup, total)

    monkeypatch.setattr(star.engine.train, "get_linear_schedule_with_warmup", spy)
    items = [Encoded([5, 6], [7])] * 6 + [Encoded([5] * 8, [7])] * 2
    config = TrainConfig(epochs=2, batch_size=4, batch_tokens=17, b_decay=0.0)
    train_adapter(adapter, items, tiny[1].pad_token_id, config, 0)
    assert sizes == [8]
