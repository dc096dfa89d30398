"""Model loading: the embedded SmolLM2 answers a real OBQA question; LoRA attaches and detaches."""

import torch

from star.config import LoraConfig, ModelConfig
from star.engine import model as models
from star.engine.batching import encode
from star.engine.evaluate import generate
from star.tasks.registry import TASKS, load_split


def test_embedded_model_answers_an_obqa_question():
    model, tok = models.load(ModelConfig(name=models.EMBEDDED))
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    assert tok.eos_token == tok.pad_token == "<|im_end|>"
    example = load_split("obqa", "test")[0]
    prompts = encode([example], tok, 128, 4)
    (out,) = generate(model, tok, prompts, max_new_tokens=8, batch_size=1)
    assert out.text.strip(), "the model produced no text"
    predicted, _ = TASKS["obqa"].grade(out.text, example.answer)
    assert predicted in {"A", "B", "C", "D"}, out.text


def test_pick_dtype():
    cpu = torch.device("cpu")
    assert models.pick_dtype("float32", cpu) == torch.float32
    assert models.pick_dtype("bfloat16", cpu) == torch.bfloat16
    assert models.pick_dtype("auto", cpu) in (torch.float32, torch.bfloat16)


def test_lora_attaches_fresh_and_unloads_to_the_same_base(tiny):
    base, _ = tiny
    before = {k: v.clone() for k, v in base.state_dict().items()}
    peft = models.attach_lora(base, LoraConfig(r=4, target_modules=("q_proj", "v_proj")), seed=1)
    trainable = [n for n, p in peft.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert all(torch.count_nonzero(p) == 0 for n, p in peft.named_parameters() if "lora_B" in n)
    restored = peft.unload()
    after = restored.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_processes_starting_together_build_a_cached_model_once(tmp_path, monkeypatch):
    """Two builders racing on a fresh cache (a data-parallel launch): one builds, the other
    waits and reuses it; without the lock both build and the second deletes the first's."""
    import threading
    import time

    monkeypatch.setenv("STAR_CACHE", str(tmp_path))
    builds = []

    def build(into):
        builds.append(into)
        time.sleep(0.3)  # long enough for the other builder to arrive
        (into / "config.json").write_text("{}")

    got = []
    workers = [
        threading.Thread(target=lambda: got.append(models._cached("m", build))) for _ in range(2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(builds) == 1
    assert got == [tmp_path / "m"] * 2 and (tmp_path / "m" / "config.json").is_file()


def test_runtime_refusals_name_what_is_missing(monkeypatch):
    import importlib.util

    import pytest

    from star.errors import ModelError

    gpu = torch.device("cuda", 0)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name: None if name in ("bitsandbytes", "flash_attn") else real(name),
    )
    with pytest.raises(ModelError, match=r"^--quantize 4bit needs bitsandbytes: pip install"):
        models.check_runtime(ModelConfig(quantize="4bit"), gpu)
    with pytest.raises(ModelError, match=r"^--attention flash needs the flash-attn package"):
        models.check_runtime(ModelConfig(attention="flash"), gpu)
    models.check_runtime(ModelConfig(), gpu)  # bf16 + SDPA needs nothing extra
    assert models.attention_kernel("auto", gpu) == "sdpa"  # no flash-attn: PyTorch's SDPA
    assert models.attention_kernel("flash", gpu) == "flash_attention_2"
    assert models.merge_pays(None, gpu) and not models.merge_pays(None, gpu, quantized=True)
