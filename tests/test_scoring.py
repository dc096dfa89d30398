"""The fast scorer against a naive reference: full logits everywhere, one example at a time."""

import torch

from star.data import Example, encode
from star.scoring import score
from star.tasks import load_split
from star.uncertainty import sum_by_row, token_nll_and_entropy


def test_token_nll_and_entropy_known_values():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [1.0, 1e-30, 1e-30]]))  # (2, 3)
    nll, ent = token_nll_and_entropy(logits, torch.tensor([1, 0]))
    assert torch.allclose(nll, torch.tensor([torch.log(torch.tensor(4.0)), 0.0]))
    h = -(0.5 * torch.log(torch.tensor(0.5)) + 2 * 0.25 * torch.log(torch.tensor(0.25)))
    assert torch.allclose(ent, torch.stack([h, torch.tensor(0.0)]), atol=1e-6)


def test_sum_by_row():
    total = sum_by_row(torch.tensor([1.0, 2.0, 4.0, 8.0]), torch.tensor([0, 2, 0, 2]), 3)
    assert total.tolist() == [5.0, 0.0, 10.0]


def naive_scores(model, items):
    """Research-code style: one example, logits at every position, then pick the answer rows."""
    pe, ent = [], []
    for x in items:
        ids = torch.tensor([x.prompt_ids + x.target_ids])
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)  # (T, V)
        start = len(x.prompt_ids)
        rows = logp[start - 1 : start - 1 + len(x.target_ids)]  # (T_ans, V)
        pe.append(-rows.gather(-1, torch.tensor(x.target_ids)[:, None]).sum())
        ent.append(-(rows.exp() * rows).sum())
    return torch.stack(pe), torch.stack(ent)


@torch.inference_mode()
def test_batched_scores_equal_per_example_reference(tiny):
    model, tok = tiny
    examples = load_split("gsm8k", "train")[:5] + load_split("obqa", "train")[:4]
    examples.append(Example("short", "Hi", "A", "A"))
    items = encode(examples, tok, max_prompt_tokens=64, max_target_tokens=40, with_eos=False)
    fast = score(model, items, tok.pad_token_id, batch_tokens=400)
    pe, ent = naive_scores(model, items)
    assert torch.allclose(fast.pe, pe, atol=1e-4, rtol=1e-5)
    assert torch.allclose(fast.token_entropy, ent, atol=1e-4, rtol=1e-5)
    assert fast.n_tokens.tolist() == [len(x.target_ids) for x in items]
    # a different batch composition gives the same scores
    alone = score(model, items, tok.pad_token_id, batch_tokens=1)
    assert torch.allclose(alone.pe, fast.pe, atol=1e-4)
