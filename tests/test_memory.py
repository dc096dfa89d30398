"""The memory estimate against what PyTorch actually keeps, and its parts by hand."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from star.engine import memory
from star.engine.batching import Encoded, collate
from star.engine.model import checkpointing
from star.engine.train import AnswerLoss

ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ROWS, TOKENS = 2, 24


def _llama(layers: int, hidden: int, intermediate: int, heads: int, kv_heads: int):
    return LlamaConfig(
        vocab_size=300,
        hidden_size=hidden,
        num_hidden_layers=layers,
        intermediate_size=intermediate,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        tie_word_embeddings=True,
    )


def _saved_bytes(config, dtype, targets, recompute=False) -> int:
    """Bytes of the tensors autograd saves in one training forward (weights excluded)."""
    torch.manual_seed(0)
    model = get_peft_model(
        LlamaForCausalLM(config).to(dtype),
        LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=list(targets)),
    )
    if recompute:
        checkpointing(model, True)
    model.train()
    batch = collate([Encoded(list(range(5, 5 + TOKENS - 2)), [7, 8])] * ROWS, 0)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        where = t.untyped_storage().data_ptr()
        if where not in weights:
            kept[(where, t.dtype)] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        AnswerLoss(model)(batch.input_ids, batch.attention_mask, batch.labels)
    return sum(kept.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "shape, targets",
    [((192, 512, 6, 2), ALL), ((192, 512, 6, 2), ("q_proj", "v_proj")), ((160, 448, 5, 5), ALL)],
)
def test_layer_activations_match_what_autograd_keeps(dtype, shape, targets):
    # a layer's share: two layers minus one, so the embeddings and final norm cancel
    one, three = (_saved_bytes(_llama(n, *shape), dtype, targets) for n in (1, 3))
    measured = (three - one) / 2 / (ROWS * TOKENS)
    settings = memory.Settings(dtype.itemsize, "none", 8, targets, False, cuda=False)
    estimated = memory.layer_activations(memory.Shape.of(_llama(1, *shape)), settings)
    assert estimated == pytest.approx(measured, rel=0.02)


def test_checkpointing_keeps_each_layers_input():
    config = _llama(3, 192, 512, 6, 2)
    plain = _saved_bytes(config, torch.float32, ALL)
    checkpointed = _saved_bytes(config, torch.float32, ALL, recompute=True)
    shape = memory.Shape.of(config)
    assert checkpointed < plain / 10
    # three layer inputs in fp32, plus the final norm's and the head's few tensors
    assert checkpointed == pytest.approx(3 * ROWS * TOKENS * shape.hidden * 4, rel=0.5)


def test_parameter_counts_match_the_model():
    config = _llama(2, 192, 512, 6, 2)
    model = LlamaForCausalLM(config)
    shape = memory.Shape.of(config)
    assert shape.params() == sum(p.numel() for p in model.parameters())
    lora = get_peft_model(model, LoraConfig(r=8, target_modules=list(ALL)))
    trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    assert shape.lora_params(8, ALL) == trainable


def test_seven_b_by_hand():
    # Llama-2-7B: 32 layers, hidden 4096, MLP 11008, 32 heads, vocab 32000, untied
    seven = memory.Shape(32000, 4096, 32, 11008, 32, 32, 128, tied=False)
    assert seven.params() == 6_738_415_616  # the published count
    bf16 = memory.Settings(2, "none", 16, ("q_proj", "v_proj"), False, cuda=True)
    assert memory.weight_bytes(seven, bf16) == 2 * 6_738_415_616
    four = memory.Settings(2, "4bit", 16, ("q_proj", "v_proj"), False, cuda=True)
    linear = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    assert memory.weight_bytes(seven, four) == pytest.approx(
        linear * 4.127 / 8 + 2 * (2 * 32000 * 4096 + 65 * 4096)
    )
    # r 16 on q and v: 32 layers × 2 modules × 16 × (4096 + 4096)
    assert seven.lora_params(16, ("q_proj", "v_proj")) == 8_388_608
    est = memory.training(seven, four, rows=4, tokens=512, answers=4)
    assert est.parts["LoRA + gradients + AdamW"] == 16 * 8_388_608
    assert est.total < 24 * memory.GIB  # QLoRA's promise for a 7B model
    checkpointed = memory.training(
        seven, memory.Settings(2, "4bit", 16, ("q_proj", "v_proj"), True, True), 4, 512, 4
    )
    assert checkpointed.parts["activations"] < est.parts["activations"] / 10


def test_not_a_llama_is_refused_in_words():
    from transformers import GPT2Config

    with pytest.raises(memory.NotEstimated, match="'gpt2' config lacks .*intermediate_size"):
        memory.Shape.of(GPT2Config())


def test_a_sweeps_runs_each_get_their_share_of_the_device(monkeypatch, tmp_path):
    import subprocess

    from star.experiment import sweep

    envs = []

    class Done:
        returncode = 0

        def __init__(self, cmd, env, stdout, stderr):
            envs.append(env)

        def poll(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Done)
    pairs = [sweep.Pair("random", s) for s in range(4)]
    assert sweep.sweep(tmp_path, pairs, [], jobs=4) == {p: 0 for p in pairs}
    assert {e[memory.SHARE_VARIABLE] for e in envs} == {"0.250000"}
    everything = memory.capacity(torch.device("cpu"))
    monkeypatch.setenv(memory.SHARE_VARIABLE, "0.25")
    assert memory.share() == 0.25
    assert memory.capacity(torch.device("cpu")) == pytest.approx(everything / 4, abs=1)
    monkeypatch.setenv(memory.SHARE_VARIABLE, "2")
    with pytest.raises(memory.ModelError, match="STAR_MEMORY_SHARE must be in"):
        memory.share()


def test_token_batches_bound_the_estimated_batch():
    from star.config import RunConfig, TrainConfig

    config = RunConfig(train=TrainConfig(batch_size=8, batch_tokens=100))
    shape_of = _llama(2, 192, 512, 6, 2)
    cpu = torch.device("cpu")
    need = memory.need(config, shape_of, [(40, 2), (10, 1)], cpu, torch.float32, 512)
    assert (need.rows, need.tokens, need.answers) == (2, 42, 4)  # 100 // 42 rows of the longest
    plain = memory.need(RunConfig(), shape_of, [(40, 2)], cpu, torch.float32, 512)
    assert (plain.rows, plain.tokens) == (8, 42)
