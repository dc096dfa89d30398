"""How close star's hot paths run to this machine's limit, in one process.

Compares, on the embedded SmolLM2 and a real pool slice (target = gold):
  * scoring: a naive scorer written the way research code does it (one example at a time,
    full-vocabulary logits at every position, a Python loop over answer tokens) against
    star's scorer, and both against the FLOP ceiling (a large matmul, same dtype, same run);
  * generation: per-example greedy `generate` against star's batched generation;
  * training: one LoRA step at the paper's batch size, star's loss against a plain padded loss.

Usage: python benchmarks/scoring.py [--obqa 256] [--gsm8k 48] [--quick]
The last four lines are the headline figures (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

os.environ.setdefault("STAR_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "star"))

from measure import Flops, matmul_ceiling, peak_memory, spearman, timed  # noqa: E402

from star.config import LoraConfig, ModelConfig, TrainConfig  # noqa: E402
from star.engine import model as models  # noqa: E402
from star.engine.batching import Encoded, collate, encode  # noqa: E402
from star.engine.generate import generate  # noqa: E402
from star.engine.scoring import score  # noqa: E402
from star.engine.train import answer_loss, optimizer_groups  # noqa: E402
from star.tasks.registry import load_split  # noqa: E402
from star.tasks.resolve import sample  # noqa: E402

MAX_PROMPT, MAX_TARGET = 128, 256  # star's defaults (data.max_prompt_tokens / max_target_tokens)


# --------------------------------------------------------------------------- the naive ways


@torch.inference_mode()
def naive_score(model, items: list[Encoded]) -> tuple[torch.Tensor, torch.Tensor]:
    """Research-code scorer: one example at a time, logits for every position, a Python loop."""
    pe, ent = [], []
    for x in items:
        ids = torch.tensor([x.prompt_ids + x.target_ids])
        logits = model(ids).logits[0].float()  # (T, V)
        logp = torch.log_softmax(logits, dim=-1)
        nll, h = 0.0, 0.0
        for t in range(len(x.prompt_ids), len(ids[0])):
            row = logp[t - 1]
            nll += -row[ids[0, t]].item()
            h += -(row.exp() * row).sum().item()
        pe.append(nll)
        ent.append(h)
    return torch.tensor(pe), torch.tensor(ent)


@torch.inference_mode()
def naive_generate(model, tokenizer, prompts: list[Encoded], new_tokens: int) -> list[list[int]]:
    out = []
    for x in prompts:
        ids = torch.tensor([x.prompt_ids])
        gen = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )[0, ids.shape[1] :].tolist()
        out.append(
            gen[: gen.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in gen else gen
        )
    return out


def padded_loss(model, batch) -> torch.Tensor:
    """The plain way: logits at every position, cross-entropy with ignore_index."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), batch.labels[:, 1:].flatten(), ignore_index=-100
    )


# --------------------------------------------------------------------------- sections


def pool(task: str, size: int, tokenizer) -> list[Encoded]:
    examples = sample(load_split(task, "train"), size, seed=0)
    return encode(examples, tokenizer, MAX_PROMPT, MAX_TARGET)


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def gflops(x: float) -> str:
    return f"{x / 1e9:.1f} GFLOP/s"


def scoring(model, tok, items, flops, ceiling, args, naive_n: int) -> dict:
    """star vs naive on one task; the speed-up compares useful-FLOP rates (same pool sample)."""
    lengths, answers = [len(x) for x in items], [len(x.target_ids) for x in items]
    useful = flops.forward(lengths, answers)
    t_star, scores = timed(lambda: score(model, items, tok.pad_token_id, args.batch_tokens))
    sub = items[:naive_n]
    t_naive, (pe, ent) = timed(lambda: naive_score(model, sub))
    useful_sub = flops.forward(lengths[:naive_n], answers[:naive_n])
    diff = max(
        float((scores.pe[:naive_n] - pe).abs().max()),
        float((scores.token_entropy[:naive_n] - ent).abs().max()),
    )
    star_rate, naive_rate = useful / t_star, useful_sub / t_naive
    print(
        f"  {len(items)} examples, {sum(lengths)} tokens ({sum(answers)} scored), "
        f"mean length {sum(lengths) / len(items):.0f}"
    )
    print(
        f"  naive fp32 ({naive_n} ex): {naive_n / t_naive:.2f} ex/s, "
        f"{sum(lengths[:naive_n]) / t_naive:.0f} tok/s, {gflops(naive_rate)} useful, "
        f"mfu {naive_rate / ceiling:.2f}"
    )
    print(
        f"  star  fp32: {len(items) / t_star:.2f} ex/s, {sum(lengths) / t_star:.0f} tok/s, "
        f"{gflops(star_rate)} useful, mfu {star_rate / ceiling:.2f}"
    )
    print(f"  max |star − naive| over PE and ME: {diff:.2e}  (must be ≤ 1e-3)")
    return {
        "speedup": star_rate / naive_rate,
        "mfu": star_rate / ceiling,
        "diff": diff,
        "pe": scores.pe,
        "seconds": t_star,
    }


def bf16_agreement(bf16_model, tok, items, fp32_pe, flops, ceiling, budget: int) -> float:
    t, scores = timed(lambda: score(bf16_model, items, tok.pad_token_id, budget))
    rho = spearman(scores.pe, fp32_pe[: len(items)])
    rate = flops.forward([len(x) for x in items], [len(x.target_ids) for x in items]) / t
    print(
        f"  star bf16 ({len(items)} ex): {len(items) / t:.2f} ex/s, {gflops(rate)}, "
        f"mfu {rate / ceiling:.2f} of the bf16 ceiling; Spearman vs fp32 {rho:.4f}"
    )
    return rho


def memory(model, tok, obqa, gsm8k, budgets: list[int]) -> None:
    """Peak memory of one scoring batch, by token budget and task, and of the naive way."""
    score(model, obqa[:2], tok.pad_token_id, 512)  # one-time allocations out of the way
    for budget in budgets:
        cells = []
        for name, items in (("obqa", obqa), ("gsm8k", gsm8k)):
            width = max(len(x) for x in items)
            rows = max(1, budget // width)
            with peak_memory() as peak:
                score(model, items[:rows], tok.pad_token_id, budget)
            cells.append(f"{name} {rows}×{width}: {peak['bytes'] / 2**20:6.0f} MiB")
        print(f"  star, batch budget {budget:5d} tokens: " + ", ".join(cells))
    longest = max(gsm8k, key=len)
    logits_mib = len(longest) * model.config.vocab_size * 4 / 2**20
    with peak_memory() as peak:
        naive_score(model, [longest])
    print(
        f"  naive, one gsm8k example of {len(longest)} tokens: {peak['bytes'] / 2**20:.0f} MiB "
        f"(its fp32 [T, V] logits alone: {logits_mib:.0f} MiB)"
    )


def training(model, tok, items, flops, ceiling, steps: int) -> float:
    """LoRA steps at batch 8: star's loss (vocabulary only at answer positions) against the
    plain padded loss, same adapter init, same batches, same dropout draws."""
    from star.engine.batching import length_grouped_batches

    eos = [tok.eos_token_id]
    items = [Encoded(x.prompt_ids, x.target_ids + eos) for x in items]
    batches = length_grouped_batches([len(x) for x in items], 8, torch.Generator().manual_seed(0))[
        :steps
    ]
    curves, seconds, useful = {}, [], 0.0
    for name, loss_fn in (("star", answer_loss), ("padded", padded_loss)):
        adapted = models.attach_lora(model, LoraConfig(), seed=0)
        optimizer = torch.optim.AdamW(optimizer_groups(adapted, 0.5), lr=TrainConfig().lr)
        adapted.train()
        torch.manual_seed(0)
        curves[name] = []
        for index in batches:
            batch = collate([items[i] for i in index], tok.pad_token_id)
            start = time.perf_counter()
            loss = loss_fn(adapted, batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if name == "star" and len(curves[name]) > 0:  # the first step warms up, untimed
                seconds.append(time.perf_counter() - start)
                sub = [items[i] for i in index]
                useful += 2 * flops.forward([len(x) for x in sub], [len(x.target_ids) for x in sub])
            curves[name].append(loss.item())
        model = adapted.unload()
    rate = useful / sum(seconds)
    tokens = sum(len(items[i]) for index in batches[1:] for i in index)
    print(
        f"  {steps} steps of 8 OBQA examples ({tokens / (steps - 1):.0f} tokens/timed step), "
        f"LoRA r={LoraConfig().r} on {len(LoraConfig().target_modules)} projections"
    )
    print(
        f"  star: {statistics.median(seconds):.2f} s/step (median), {tokens / sum(seconds):.0f} "
        f"tok/s, {gflops(rate)} useful (4 × params × tokens), mfu {rate / ceiling:.2f}"
    )
    print("  loss per step, star:   " + " ".join(f"{x:.4f}" for x in curves["star"]))
    print("  loss per step, padded: " + " ".join(f"{x:.4f}" for x in curves["padded"]))
    worst = max(abs(a - b) for a, b in zip(curves["star"], curves["padded"], strict=True))
    print(f"  max loss difference: {worst:.1e}")
    return rate / ceiling


def generation(model, tok, prompts, args) -> float:
    """Forced-length greedy decoding (every row makes --new-tokens steps, so both sides do the
    same work); outputs compared up to the first EOS, which is what evaluation reads."""
    sub = prompts[: args.naive_gen_prompts]
    t_naive, naive = timed(lambda: naive_generate(model, tok, sub, args.new_tokens))
    t_star, ours = timed(
        lambda: generate(
            model, tok, prompts, args.new_tokens, len(prompts), args.batch_tokens, stop_at_eos=False
        )
    )
    naive_rate = sum(len(x) for x in naive) / t_naive
    star_rate = len(prompts) * args.new_tokens / t_star
    same = sum(
        a.token_ids == b[: len(a.token_ids)] or b == a.token_ids[: len(b)]
        for a, b in zip(ours, naive, strict=False)
    )
    print(f"  naive per-example fp32 ({len(sub)} prompts): {naive_rate:.1f} new tok/s")
    print(
        f"  star batched fp32 ({len(prompts)} prompts, batch {len(prompts)}): "
        f"{star_rate:.1f} new tok/s"
    )
    print(f"  identical greedy outputs (up to EOS): {same}/{len(sub)}")
    return star_rate / naive_rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--obqa", type=int, default=256, help="OBQA pool examples")
    parser.add_argument("--gsm8k", type=int, default=48, help="GSM8K pool examples")
    parser.add_argument("--naive", type=int, default=48, help="OBQA examples the naive scorer sees")
    parser.add_argument("--naive-gsm8k", type=int, default=12, help="GSM8K ones (4x longer)")
    parser.add_argument("--bf16", type=int, default=24, help="examples per task scored in bf16")
    parser.add_argument("--gen-prompts", type=int, default=64, help="GSM8K prompts for generation")
    parser.add_argument("--naive-gen-prompts", type=int, default=8, help="of those, per-example")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=5, help="the first is untimed")
    parser.add_argument("--batch-tokens", type=int, default=None, help="default: star's")
    parser.add_argument("--quick", action="store_true", help="small sizes, to try the script")
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--train-only", action="store_true", help="only the training section")
    args = parser.parse_args()
    if args.quick:
        args.obqa, args.gsm8k, args.naive, args.naive_gsm8k, args.bf16 = 32, 8, 8, 4, 4
        args.gen_prompts, args.naive_gen_prompts, args.new_tokens = 8, 2, 8
        args.train_steps = 3
    torch.manual_seed(0)
    clock = time.perf_counter()
    model, tok = models.load(ModelConfig(name=models.EMBEDDED, dtype="float32"))
    if args.train_only:
        ceiling = matmul_ceiling(torch.float32)
        print(f"fp32 ceiling {gflops(ceiling)}")
        training(model, tok, pool("obqa", args.obqa, tok), Flops(model), ceiling, args.train_steps)
        return 0
    if args.memory_only:
        obqa, gsm8k = pool("obqa", args.obqa, tok), pool("gsm8k", 64, tok)
        memory(model, tok, obqa, gsm8k, [512, 1024, 2048, 4096])
        return 0
    args.batch_tokens = models.batch_tokens(args.batch_tokens, models.device())
    print(f"star forward budget: {args.batch_tokens} tokens; {torch.get_num_threads()} threads")
    flops = Flops(model)

    section("FLOP ceiling (x @ Wᵀ, 2048², this process)")
    ceilings = {dtype: matmul_ceiling(dtype) for dtype in (torch.float32, torch.bfloat16)}
    for dtype, rate in ceilings.items():
        print(f"  {str(dtype):15s} {gflops(rate)}")
    fast = max(ceilings, key=ceilings.get)
    chosen = models.pick_dtype("auto", models.device())
    print(f"  fastest: {fast}; star's dtype=auto picks {chosen} here")
    ceiling = ceilings[torch.float32]

    obqa, gsm8k = pool("obqa", args.obqa, tok), pool("gsm8k", args.gsm8k, tok)
    results = {}
    for name, items, naive_n in (("obqa", obqa, args.naive), ("gsm8k", gsm8k, args.naive_gsm8k)):
        section(f"scoring {name} (target = gold, 1 pass)")
        results[name] = scoring(model, tok, items, flops, ceiling, args, naive_n)

    section("bf16 (scores must rank as fp32's do)")
    bf16_model, _ = models.load(ModelConfig(name=models.EMBEDDED, dtype="bfloat16"))
    rhos = [
        bf16_agreement(
            bf16_model,
            tok,
            items[: args.bf16],
            results[name]["pe"],
            flops,
            ceilings[torch.bfloat16],
            args.batch_tokens,
        )
        for name, items in (("obqa", obqa), ("gsm8k", gsm8k))
    ]
    del bf16_model

    section("scaling with pool size (star, OBQA)")
    base = max(1, args.obqa // 4)
    for factor in (1, 2, 4):
        n = base * factor
        t = (
            results["obqa"]["seconds"]
            if n == len(obqa)
            else timed(lambda n=n: score(model, obqa[:n], tok.pad_token_id, args.batch_tokens))[0]
        )
        print(f"  ×{factor}: {n:4d} examples in {t:6.1f} s ({t / n * 1000:.0f} ms/example)")

    section("MC dropout passes (star, OBQA, fresh adapter, LoRA dropout live)")
    adapted = models.attach_lora(model, LoraConfig(), seed=0)
    sub = obqa[:base]
    times = {}
    for k in (1, 3):
        torch.manual_seed(0)
        with models.mc_dropout(adapted):
            times[k] = timed(
                lambda k=k: score(adapted, sub, tok.pad_token_id, args.batch_tokens, passes=k)
            )[0]
        print(f"  K={k}: {times[k]:.1f} s for {len(sub)} examples")
    model = adapted.unload()
    print(f"  K=3 costs {times[3] / times[1]:.2f}× one pass (target ≤ 3.1×)")

    section("peak scoring memory above the loaded model (fresh process, no malloc reuse)")
    sys.stdout.flush()
    subprocess.run(
        [sys.executable, __file__, "--memory-only", "--obqa", str(args.obqa)],
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},  # big blocks go back to the OS
        check=True,
    )

    section("generation (GSM8K prompts, greedy)")
    gen_speedup = generation(
        model,
        tok,
        gsm8k[: args.gen_prompts]
        if len(gsm8k) >= args.gen_prompts
        else pool("gsm8k", args.gen_prompts, tok),
        args,
    )

    section("training (LoRA, batch 8)")
    train_mfu = training(model, tok, obqa, flops, ceiling, args.train_steps)

    section("summary")
    ok = all(r["diff"] <= 1e-3 for r in results.values()) and min(rhos) >= 0.99
    print(f"  scores equal (fp32 ≤ 1e-3, bf16 Spearman ≥ 0.99): {'yes' if ok else 'NO'}")
    print(f"  benchmark wall time: {time.perf_counter() - clock:.0f} s")
    for name, r in results.items():
        print(f"  {name}: speedup_vs_naive_fp32 {r['speedup']:.1f}x, mfu {r['mfu']:.2f}")
    print(f"speedup_vs_naive_fp32: {min(r['speedup'] for r in results.values()):.1f}x")
    print(f"mfu: {min(r['mfu'] for r in results.values()):.2f}")
    print(f"generation_speedup: {gen_speedup:.1f}x")
    print(f"train_mfu: {train_mfu:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
