"""The fast scorer against a naive reference (full logits everywhere, one example at a time),
and Monte-Carlo dropout that is really stochastic."""

import pytest
import torch

from star.config import LoraConfig
from star.engine import model as models
from star.engine.batching import encode
from star.engine.scoring import score
from star.tasks.registry import load_split
from star.tasks.spec import Example


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


@pytest.fixture(scope="module")
def items(tiny):
    _, tok = tiny
    examples = load_split("gsm8k", "train")[:5] + load_split("obqa", "train")[:4]
    examples.append(Example("short", "Hi", "A", "A"))
    return encode(examples, tok, max_prompt_tokens=64, max_target_tokens=40)


@pytest.fixture(scope="module")
def reference(tiny, items):
    with torch.inference_mode():
        return naive_scores(tiny[0], items)


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("batch_tokens", [1, 400, 100_000])
def test_batched_scores_equal_per_example_reference(
    tiny, items, reference, padding_side, batch_tokens
):
    """Batch composition (token budget) and padding side change nothing."""
    model, tok = tiny
    fast = score(model, items, tok.pad_token_id, batch_tokens, padding_side=padding_side)
    pe, ent = reference
    assert torch.allclose(fast.pe, pe, atol=1e-4, rtol=1e-5)
    assert torch.allclose(fast.token_entropy, ent, atol=1e-4, rtol=1e-5)
    assert fast.n_tokens.tolist() == [len(x.target_ids) for x in items]
    assert fast.bald.tolist() == [0.0] * len(items)


@pytest.fixture
def with_adapter(tiny):
    """The tiny model with a LoRA adapter whose B is non-zero, so dropout changes outputs."""
    base, _ = tiny
    made = []

    def attach(dropout: float):
        peft = models.attach_lora(base, LoraConfig(r=4, dropout=dropout), seed=0)
        made.append(peft)
        with torch.no_grad():
            for name, p in peft.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
        return peft.eval()

    yield attach
    for peft in made:
        peft.unload()  # the session's tiny model goes back to its plain state


def test_mc_passes_differ_and_are_seeded(tiny, items, with_adapter):
    model = with_adapter(0.3)
    _, tok = tiny
    with models.mc_dropout(model) as live:
        assert live > 0
        torch.manual_seed(0)
        a = score(model, items, tok.pad_token_id, 400, passes=1)
        b = score(model, items, tok.pad_token_id, 400, passes=1)
        torch.manual_seed(0)
        again = score(model, items, tok.pad_token_id, 400, passes=1)
        torch.manual_seed(0)
        three = score(model, items, tok.pad_token_id, 400, passes=3)
    assert not torch.allclose(a.pe, b.pe)  # two stochastic passes differ
    assert torch.equal(a.pe, again.pe)  # the same seed gives the same pass
    assert (three.bald > 0).all()
    assert (
        not model.base_model.model.model.layers[0].self_attn.q_proj.lora_dropout["default"].training
    )  # modes restored


def test_one_pass_without_dropout_equals_deterministic(tiny, items, with_adapter):
    model = with_adapter(0.0)
    _, tok = tiny
    plain = score(model, items, tok.pad_token_id, 400)
    with models.mc_dropout(model) as live:
        assert live == 0
        mc = score(model, items, tok.pad_token_id, 400, passes=1)
    assert torch.equal(plain.pe, mc.pe) and torch.equal(plain.token_entropy, mc.token_entropy)


def test_length_norm_divides_by_answer_tokens(tiny, items):
    model, tok = tiny
    total = score(model, items, tok.pad_token_id, 400)
    mean = score(model, items, tok.pad_token_id, 400, length_norm=True)
    assert torch.allclose(mean.pe, total.pe / total.n_tokens, atol=1e-5)


def test_vocabulary_blocks_change_nothing(tiny, items, reference, monkeypatch):
    """Log-softmax blocks smaller than one example's answer give the same sums."""
    model, tok = tiny
    monkeypatch.setattr("star.engine.scoring.LOGIT_BLOCK", 3)
    fast = score(model, items, tok.pad_token_id, 400)
    assert torch.allclose(fast.pe, reference[0], atol=1e-4, rtol=1e-5)
    assert torch.allclose(fast.token_entropy, reference[1], atol=1e-4, rtol=1e-5)
