"""The selection path: signals computed only when read, two-stage MC and subsampling as
stated, and merged-LoRA passes equal to unmerged ones with the base weights left bit-identical."""

import dataclasses

import pytest
import torch
from conftest import signal_settings

from star.config import LoraConfig
from star.engine import model as models
from star.engine import signals as signals_module
from star.engine.batching import Encoded
from star.engine.cache import SignalCache
from star.engine.scoring import embed, score
from star.engine.signals import PoolSignals
from star.method.strategies import STRATEGIES

SETTINGS = signal_settings(mc_passes=3)


def items(n: int, seed: int = 0) -> list[Encoded]:
    g = torch.Generator().manual_seed(seed)
    return [
        Encoded(
            torch.randint(
                100, 5000, (int(torch.randint(4, 12, (1,), generator=g)),), generator=g
            ).tolist(),
            torch.randint(100, 5000, (2,), generator=g).tolist(),
        )
        for _ in range(n)
    ]


@pytest.fixture
def tuned(tiny):
    """The tiny model with a trained-looking adapter (B non-zero), taken off afterwards."""
    model, tok = tiny
    config = LoraConfig(r=4, alpha=8, dropout=0.2, target_modules=("q_proj", "v_proj", "up_proj"))
    peft = models.attach_lora(model, config, 0)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    peft.eval()
    yield peft, tok
    peft.unload()


class Spy:
    """Records (items, passes) of every scoring call and every answer request."""

    def __init__(self, monkeypatch):
        self.scored: list[tuple[int, int]] = []
        self.answered: list[int] = []
        real = signals_module.score

        def spy(model, part, *args, passes=1, **kwargs):
            self.scored.append((len(part), passes))
            return real(model, part, *args, passes=passes, **kwargs)

        monkeypatch.setattr(signals_module, "score", spy)

    def answer(self, model, positions, base):
        self.answered.extend(positions)
        return [[7, 8] for _ in positions]


def source(model, spy, n=12, cache=None, **settings) -> PoolSignals:
    return PoolSignals(
        model,
        items(n),
        0,
        dataclasses.replace(SETTINGS, **settings),
        spy.answer,
        cache or (lambda kind: pytest.fail("the base cache was not needed")),
    )


def signals_of(pool: PoolSignals):
    return pool.signals(0, torch.Generator().manual_seed(0))


def test_random_runs_no_forward_pass(tuned, monkeypatch):
    spy = Spy(monkeypatch)
    pool = source(tuned[0], spy, target="generated")
    scores = STRATEGIES["random"].score(signals_of(pool))
    assert scores.shape == (12,) and spy.scored == [] and spy.answered == []


def test_a_tuned_only_strategy_never_asks_for_the_base_model(tuned, monkeypatch):
    spy = Spy(monkeypatch)
    pool = source(tuned[0], spy, mc_passes=1)
    signals = signals_of(pool)
    STRATEGIES["pe"].score(signals)
    STRATEGIES["entropy"].score(signals)  # the same pass, memoised
    assert spy.scored == [(12, 1)]


def test_base_signals_come_from_the_cache_once(tuned, monkeypatch, tmp_path):
    spy = Spy(monkeypatch)
    cache = SignalCache(tmp_path, "ns")
    first = source(tuned[0], spy, mc_passes=1, cache=lambda kind: cache).base()
    assert spy.scored == [(12, 1), (12, 1)]  # with the prompt, and without it (IFD)
    again = source(
        tuned[0], spy, mc_passes=1, cache=lambda kind: SignalCache(tmp_path, "ns")
    ).base()
    assert spy.scored == [(12, 1), (12, 1)]  # nothing recomputed
    assert torch.equal(first.pe, again.pe) and torch.equal(first.n_tokens, again.n_tokens)
    with tuned[0].disable_adapter():
        direct = score(tuned[0], items(12), 0, 64)
    assert torch.allclose(first.pe, direct.pe, atol=1e-5)


def test_the_base_prior_scores_each_distinct_answer_once_after_the_start_token(
    tuned, monkeypatch, tmp_path
):
    """IFD's unconditional term: the same answers as `base()`, after `start_id` alone, one
    pass per distinct answer; the answer the base model gives (target generated) is the one
    scored, and the cache keeps it with the conditional scores."""
    spy = Spy(monkeypatch)  # answers [7, 8] for every item
    cache = SignalCache(tmp_path, "ns")
    pool = source(tuned[0], spy, mc_passes=1, target="generated", cache=lambda kind: cache)
    prior = pool.base_prior()
    assert spy.scored == [(12, 1), (1, 1)] and spy.answered == list(range(12))
    with tuned[0].disable_adapter():
        alone = score(tuned[0], [Encoded([SETTINGS.start_id], [7, 8])], 0, 64)
        conditional = score(tuned[0], [Encoded(x.prompt_ids, [7, 8]) for x in items(12)], 0, 64)
    assert torch.allclose(prior.pe, alone.pe.expand(12), atol=1e-6)
    assert torch.allclose(pool.base().pe, conditional.pe, atol=1e-5)
    assert prior.n_tokens.tolist() == [2] * 12
    again = source(tuned[0], spy, mc_passes=1, target="generated", cache=lambda kind: cache)
    assert torch.equal(again.base_prior().pe, prior.pe) and spy.scored == [(12, 1), (1, 1)]


def test_an_embedding_does_not_depend_on_its_batch(tiny):
    model, _ = tiny
    prompts = [x.prompt_ids for x in items(6)]
    together = embed(model, prompts, 0, 64)  # several batches, right-padded
    alone = torch.cat([embed(model, [p], 0, 64) for p in prompts])
    assert together.shape == (6, model.config.hidden_size)
    assert torch.allclose(together, alone, atol=1e-5)


def test_embeddings_are_the_base_models_and_cached_once(tuned, monkeypatch, tmp_path):
    """Candidates then labelled prompts, adapter switched off, computed once per prompt."""
    calls: list[int] = []
    real = signals_module.embed
    monkeypatch.setattr(
        signals_module,
        "embed",
        lambda m, part, *a, **k: calls.append(len(part)) or real(m, part, *a, **k),
    )
    model = tuned[0]
    labelled = [x.prompt_ids for x in items(3, seed=1)]
    pool = PoolSignals(
        model,
        items(12),
        0,
        SETTINGS,
        Spy(monkeypatch).answer,
        lambda kind: SignalCache(tmp_path, kind),
        labeled=labelled,
    )
    signals = signals_of(pool)
    got, got_labelled = signals.embeddings(), signals.labeled_embeddings()
    assert calls == [15] and got.shape[0] == 12 and got_labelled.shape[0] == 3
    with model.disable_adapter():
        direct = embed(model, [x.prompt_ids for x in items(12)] + labelled, 0, 64)
    assert torch.allclose(torch.cat([got, got_labelled]), direct, atol=1e-5)
    again = PoolSignals(
        model,
        items(12),
        0,
        SETTINGS,
        Spy(monkeypatch).answer,
        lambda kind: SignalCache(tmp_path, kind),
    )
    assert torch.equal(signals_of(again).embeddings(), got) and calls == [15]


def test_two_stage_mc_runs_k_passes_only_over_the_top_m(tuned, monkeypatch):
    spy = Spy(monkeypatch)
    model = tuned[0]
    deterministic = source(model, spy, mc_passes=1).tuned()
    spy.scored.clear()
    two_stage = source(model, spy, mc_top=4).tuned()
    assert spy.scored == [(12, 1), (4, 3)]  # one pass over all, K = 3 over the top 4
    top = sorted(range(12), key=lambda i: -float(deterministic.pe[i]))[:4]
    rest = [i for i in range(12) if i not in top]
    assert torch.equal(two_stage.pe[rest], deterministic.pe[rest])
    assert torch.equal(two_stage.bald[rest], torch.zeros(8))
    assert (two_stage.bald[top] > 0).all()  # dropout live on the top 4
    assert not torch.equal(two_stage.pe[top], deterministic.pe[top])
    # with M ≥ n it is the exact K-pass run, mask for mask
    spy.scored.clear()
    everything = source(model, spy, mc_top=12).tuned()
    exact = source(model, spy).tuned()
    assert spy.scored == [(12, 3), (12, 3)]
    assert torch.equal(everything.pe, exact.pe) and torch.equal(everything.bald, exact.bald)


def test_merged_passes_equal_unmerged_and_leave_the_base_bit_identical(tuned):
    model, tok = tuned
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    pool = items(16)
    unmerged = score(model, pool, 0, 64)
    with models.merged(model):
        merged = score(model, pool, 0, 64)
        assert any(m.merged for m in model.modules() if hasattr(m, "merged_adapters"))
    assert torch.allclose(merged.pe, unmerged.pe, atol=1e-4)
    assert torch.allclose(merged.token_entropy, unmerged.token_entropy, atol=1e-4)
    for name, p in model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, before[name]), name  # bit for bit, not within rounding
    assert torch.equal(score(model, pool, 0, 64).pe, unmerged.pe)  # unmerged again
    with models.merged(model, on=False):
        assert not any(m.merged for m in model.modules() if hasattr(m, "merged_adapters"))


def label_source(model, spy, n: int, **closed) -> PoolSignals:
    """n candidates with label sets (`closed`: options, labeled, labeled_options), one pass."""
    return PoolSignals(
        model,
        items(n),
        0,
        dataclasses.replace(SETTINGS, mc_passes=1),
        spy.answer,
        lambda kind: pytest.fail("no base model"),
        **closed,
    )


def test_label_distributions_are_the_options_probabilities(tuned, monkeypatch):
    """labels(): p(label | prompt) renormalised over each candidate's options, what option
    evaluation reads; padded with 0 past a shorter set; no scoring pass."""
    from star.engine.options import option_logprobs

    model, _ = tuned
    spy = Spy(monkeypatch)
    options = [[[11], [12, 13]], [[14], [15], [16]]] * 3  # two and three labels
    pool = label_source(model, spy, 6, options=options)
    got = signals_of(pool).labels()
    prompts = [Encoded(x.prompt_ids, []) for x in items(6)]
    expected = [torch.softmax(v, -1) for v in option_logprobs(model, prompts, options, 0, 64)]
    assert got.shape == (1, 6, 3) and spy.scored == [] and spy.answered == []
    for row, want in zip(got[0], expected, strict=True):
        assert torch.allclose(row[: len(want)], want) and row[len(want) :].sum() == 0
    assert STRATEGIES["margin"].score(signals_of(pool)).shape == (6,)


def test_label_bald_takes_k_dropout_passes_of_the_distribution(tuned, monkeypatch):
    model, _ = tuned
    spy = Spy(monkeypatch)
    options = [[[11], [12]], [[14], [15]]] * 4
    make = lambda: PoolSignals(  # noqa: E731
        model, items(8), 0, SETTINGS, spy.answer, lambda kind: None, options=options
    )
    passes = signals_of(make()).labels()
    assert passes.shape == (3, 8, 2) and not torch.equal(passes[0], passes[1])
    assert torch.equal(passes, signals_of(make()).labels())  # seeded masks: the same again
    assert (STRATEGIES["label-bald"].score(signals_of(make())) > 0).all()


def test_label_measures_refuse_free_answers(tuned, monkeypatch):
    from star.errors import ConfigError

    pool = PoolSignals(
        tuned[0], items(2), 0, SETTINGS, Spy(monkeypatch).answer, None, options=[[[1], [2]], None]
    )
    with pytest.raises(ConfigError, match="closed label set"):
        STRATEGIES["margin"].score(signals_of(pool))


def test_answer_and_gradient_embeddings_of_candidates_and_labelled(tuned, monkeypatch):
    """The answer embedding is the tuned model's state at the last prompt token; the gradient
    embedding (p − onehot(ŷ)) ⊗ h with p the label distribution, for the labelled ones too."""
    from star.method.uncertainty import gradient_embedding

    model, _ = tuned
    spy = Spy(monkeypatch)
    pool = label_source(
        model,
        spy,
        5,
        labeled=[x.prompt_ids for x in items(3, seed=1)],
        options=[[[11], [12], [13]]] * 5,
        labeled_options=[[[11], [12]]] * 3,
    )
    signals = signals_of(pool)
    mine, theirs = signals.answer_embeddings()
    prompts = [x.prompt_ids for x in items(5)]
    assert torch.allclose(mine, embed(model, prompts, 0, 64, last=True), atol=1e-5)
    assert theirs.shape == (3, mine.shape[1]) and spy.scored == []
    g, known = signals.gradient_embeddings()
    assert g.shape == (5, 3 * mine.shape[1]) and known.shape == (3, 3 * mine.shape[1])
    assert torch.allclose(g, gradient_embedding(signals.labels()[0], mine))
    assert known.reshape(3, 3, -1)[:, 2].abs().sum() == 0  # two labels: the third block empty
    theirs_probs = signals.labeled_labels()
    assert theirs_probs.shape == (3, 2) and torch.allclose(theirs_probs.sum(1), torch.ones(3))
