"""Labeling benchmarks (prints its figures).

1. Self-evaluation by ONE forward pass (``selfj_trl.signals.digits.self_evaluate``: one row at a time after each
   instruction's shared prefix) against score extraction by generating up to 10 tokens and reading the digit
   distribution at the first generated position (how the Self-J authors' script does it; batched), same model, same
   prompts. Target: >= 5x.
2. ``--scaling``: wall time of full labeling (sampling + self-evaluation + cosine) for 4 sizes of
   instructions x samples, with the policy's default labeling settings; it should grow linearly with the number of
   responses, which a least-squares line and its R^2 check.
3. ``--given``: labeling GIVEN responses (``--response_column``; no sampling) with the policy's default settings on
   the first ``--n`` rows of AlpacaEval's train pool (17 models' answers per instruction, as the pool recipe labels
   them): responses per second, and the achieved FLOP/s of the policy's forward passes as a fraction of a same-run
   fp32 matmul peak (how close to the hardware's limit labeling runs). Forward FLOPs are counted as
   2 x non-embedding parameters x tokens + 2 x hidden x vocabulary x tokens whose logits are computed + attention's
   two products (see ``ForwardMeter``).

    python bench/bench_labeling.py --policy gemma-3-270m --n 32
    python bench/bench_labeling.py --policy gemma-3-270m --scaling
    python bench/bench_labeling.py --given --n 40 --num_threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hardware import matmul_peak  # noqa: E402

from selfj_trl.labeling import LabelingConfig, label_dataset  # noqa: E402
from selfj_trl.models import load_policy  # noqa: E402
from selfj_trl.prompts import build_judge_prompt, digit_token_ids, has_chat_template  # noqa: E402
from selfj_trl.signals.digits import self_evaluate  # noqa: E402


DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _rows(n: int) -> tuple[list[str], list[str], list[str]]:
    """Train-split instructions with one real model response each (never the test split)."""
    ins = {}
    for line in (DATA / "alpaca_eval_gpt4" / "instructions.jsonl").open():
        r = json.loads(line)
        if r["split"] == "train":
            ins[r["id"]] = r
    out_i, out_r, out_g = [], [], []
    for line in (DATA / "alpaca_eval_gpt4" / "responses.jsonl").open():
        r = json.loads(line)
        if r["id"] in ins and r["model"] == "alpaca-7b":
            out_i.append(ins[r["id"]]["instruction"])
            out_r.append(r["response"])
            out_g.append(ins[r["id"]]["reference"])
        if len(out_i) == n:
            break
    return out_i, out_r, out_g


def expected_digit(logits: torch.Tensor, digit_ids: list[list[int]]) -> torch.Tensor:
    """sum_d d * p(d) / sum_d p(d), where p(d) adds the probability of every token id that spells digit d."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    per_digit = torch.stack([torch.logsumexp(log_probs[:, ids], dim=-1) for ids in digit_ids], dim=-1)
    weights = torch.softmax(per_digit, dim=-1)
    return weights @ torch.arange(len(digit_ids), dtype=weights.dtype, device=weights.device)


@torch.inference_mode()
def generate_then_read(model, tok, prompts: list[str], digit_ids, batch_size: int, chat: bool) -> list[float]:
    """The generation-based baseline: greedy-generate up to 10 tokens, read the digits at the first step."""
    scores = []
    for start in range(0, len(prompts), batch_size):
        enc = tok(
            prompts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=not chat,
        )
        out = model.generate(
            **enc,
            max_new_tokens=10,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=tok.pad_token_id,
        )
        scores += expected_digit(out.scores[0], digit_ids).tolist()
    return scores


def bench_forward_vs_generate(policy: str, n: int, batch_size: int, max_length: int) -> None:
    model, tok = load_policy(policy)
    chat = has_chat_template(tok)
    ins, resp, refs = _rows(n)
    digit_ids = digit_token_ids(tok)
    prompts = [
        build_judge_prompt(tok, i, r, g, max_length=max_length).text for i, r, g in zip(ins, resp, refs, strict=False)
    ]
    self_evaluate(model, tok, ins[:2], resp[:2], refs[:2], max_length=max_length)  # warm-up
    t0 = time.perf_counter()
    fwd = self_evaluate(model, tok, ins, resp, refs, max_length=max_length, digit_ids=digit_ids)
    t_fwd = time.perf_counter() - t0
    t0 = time.perf_counter()
    gen = generate_then_read(model, tok, prompts, digit_ids, batch_size, chat)
    t_gen = time.perf_counter() - t0
    diff = max(abs(a - b) for a, b in zip(fwd, gen, strict=False))
    print(
        f"policy={policy} rows={n} batch_size={batch_size} max_length={max_length} threads={torch.get_num_threads()}"
    )
    print(f"one forward pass : {t_fwd:7.1f} s  {n / t_fwd:6.2f} rows/s")
    print(f"generate 10 + read: {t_gen:7.1f} s  {n / t_gen:6.2f} rows/s")
    print(f"speed-up: {t_gen / t_fwd:.2f}x (target >= 5x); max |score difference| = {diff:.2e}")


def bench_scaling(policy: str, sizes: list[tuple[int, int]], max_new_tokens: int) -> None:
    """Full labeling at each size; a least-squares line seconds = a + b * responses says whether it is linear
    (a is the per-run cost of loading the models, b the cost of one response)."""
    import numpy as np

    rows = [{"instruction": i, "reference": g} for i, _, g in zip(*_rows(max(s[0] for s in sizes)), strict=False)]
    print(f"policy={policy} max_new_tokens={max_new_tokens} threads={torch.get_num_threads()}")
    print(f"{'instructions':>12} {'samples':>7} {'responses':>9} {'seconds':>8} {'s/response':>10}")
    from datasets import Dataset

    points = []
    for n_ins, n_samp in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = LabelingConfig(
                dataset_name="bench",
                output_dir=tmp,
                policy=policy,
                num_samples=n_samp,
                max_new_tokens=max_new_tokens,
                max_length=768,
                chunk_size=8,
            )
            t0 = time.perf_counter()
            table = label_dataset(cfg, dataset=Dataset.from_list(rows[:n_ins]))
            dt = time.perf_counter() - t0
        points.append((len(table), dt))
        print(f"{n_ins:>12} {n_samp:>7} {len(table):>9} {dt:>8.1f} {dt / max(len(table), 1):>10.2f}", flush=True)
    x, y = np.array(points, dtype=float).T
    slope, intercept = np.polyfit(x, y, 1)
    fit = intercept + slope * x
    r2 = 1 - ((y - fit) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    worst = float(np.max(np.abs(y - fit) / y))
    print(
        f"linear fit: seconds = {intercept:.1f} + {slope:.2f} * responses; R^2 = {r2:.4f}; "
        f"largest deviation from the line {worst:.1%} (self-evaluation: {cfg.self_eval_method}, "
        f"{cfg.defaults_source})"
    )


class ForwardMeter:
    """Counts the policy's forward passes (tokens in, logits out) and the seconds they take, through hooks.

    FLOPs are counted the usual way (PaLM's model-FLOPs): 2 x non-embedding parameters per token, the output layer
    only where logits are computed, plus attention's score and value products (4 x heads x head_dim x context per
    token and layer, the context capped at the window on sliding-window layers, the prefix cache counted as context).
    """

    def __init__(self, model):
        emb = model.get_input_embeddings().weight
        self.vocab, self.hidden = emb.shape
        self.non_embedding = sum(p.numel() for p in model.parameters()) - emb.numel()
        cfg = model.config
        self.heads = cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        types = getattr(cfg, "layer_types", None) or ["full_attention"] * cfg.num_hidden_layers
        window = getattr(cfg, "sliding_window", None)
        self.windows = [window if t == "sliding_attention" and window else None for t in types]
        self.tokens = self.logit_tokens = self.calls = 0
        self.attention_flops = 0.0
        self.seconds = 0.0
        self._start = 0.0
        model.register_forward_pre_hook(self._pre, with_kwargs=True)
        model.register_forward_hook(self._post)

    def _pre(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        batch, length = ids.shape
        keep = kwargs.get("logits_to_keep", 0)
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        past = int(cache.get_seq_length()) if cache is not None else 0
        context = torch.arange(past + 1, past + length + 1, dtype=torch.float64)
        keys = sum(float((context if w is None else context.clamp(max=w)).sum()) for w in self.windows)
        self.attention_flops += 4.0 * self.heads * self.head_dim * keys * batch
        self.tokens += batch * length
        self.logit_tokens += batch * (length if not keep else min(int(keep), length))
        self.calls += 1
        self._start = time.perf_counter()

    def _post(self, module, args, output):
        self.seconds += time.perf_counter() - self._start

    @property
    def dense_flops(self) -> float:
        return 2.0 * self.non_embedding * self.tokens + 2.0 * self.hidden * self.vocab * self.logit_tokens

    @property
    def flops(self) -> float:
        return self.dense_flops + self.attention_flops


@torch.inference_mode()
def plain_forward_seconds(policy: str, rows: list[dict], max_length: int, batch_size: int = 8) -> tuple[float, int]:
    """The least any labeler of these rows must do: ONE fp32 forward of the policy over instruction + reference +
    answer (cut to ``max_length``), batches of ``batch_size`` in row order, right-padded, last logits only.
    Returns (seconds, tokens including padding)."""
    model, tok = load_policy(policy, dtype="float32")
    texts = [f"{r['instruction']}\n\n{r['reference']}\n\n{r['response']}" for r in rows]
    model(**tok(texts[:2], return_tensors="pt", padding=True), logits_to_keep=1)  # warm-up
    seconds, tokens = 0.0, 0
    for start in range(0, len(texts), batch_size):
        enc = tok(
            texts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_length,
        )
        t0 = time.perf_counter()
        model(**enc, logits_to_keep=1)
        seconds += time.perf_counter() - t0
        tokens += enc["input_ids"].numel()
    del model
    return seconds, tokens


def bench_given(
    policy: str,
    n: int,
    chunk_size: int,
    noref_baseline: bool = False,
    dtype: str = "auto",
    max_length: int | None = None,
    plain_forward: bool = True,
) -> None:
    """Label the first ``n`` rows of the AlpacaEval train pool as given responses, chunk by chunk, as the labeler
    does (models loaded before the clock starts; shard writing, which is negligible, left out)."""
    from collections import Counter

    from selfj_trl.labeling import label_chunk, prepare_rows
    from selfj_trl.labeling.rows import load_alpaca_train_pool
    from selfj_trl.signals import ModelSet

    pool = load_alpaca_train_pool(DATA / "alpaca_eval_gpt4").select(range(n))
    config = LabelingConfig(
        dataset_name="pool",
        policy=policy,
        response_column="response",
        response_model_column="model",
        chunk_size=chunk_size,
        noref_baseline=noref_baseline,
        dtype=dtype,
        **({"max_length": max_length} if max_length else {}),
    )
    rows, _ = prepare_rows(pool, config)
    models = ModelSet(config.policy, config.embedder, dtype=config.dtype)
    meter = ForwardMeter(models.policy)
    models.embedder, models.digit_ids  # noqa: B018 - load everything before the clock starts
    peak = matmul_peak()
    bf16_peak = matmul_peak(dtype=torch.bfloat16)
    stats: Counter = Counter()
    t0 = time.perf_counter()
    labeled = []
    for chunk, start in enumerate(range(0, len(rows), chunk_size)):
        labeled += label_chunk(rows[start : start + chunk_size], chunk, config, models, stats)
    wall = time.perf_counter() - t0
    peak_after = matmul_peak()
    bf16_after = matmul_peak(dtype=torch.bfloat16)
    achieved = meter.flops / meter.seconds
    best = max(peak, peak_after)
    bf16_best = max(bf16_peak, bf16_after)
    print(
        f"policy={policy} rows={len(labeled)} instructions={len(rows)} threads={torch.get_num_threads()} "
        f"settings: {config.self_eval_method}/{config.likelihood_method}, reference-free digits "
        f"{config.prompt_style if noref_baseline else 'skipped'}, cosine ({config.defaults_source})"
    )
    print(f"wall {wall:.1f} s: {len(labeled) / wall:.3f} responses/s = {3600 * len(labeled) / wall:.0f} rows/hour")
    print(
        f"policy forwards: {meter.calls} calls, {meter.tokens} tokens, {meter.logit_tokens} logit tokens, "
        f"{meter.seconds:.1f} s ({meter.seconds / wall:.0%} of wall), {meter.flops / 1e12:.2f} TFLOP "
        f"({meter.attention_flops / meter.flops:.0%} of it attention)"
    )
    print(f"fp32 matmul peak (2048^2): {peak / 1e9:.1f} GFLOP/s before, {peak_after / 1e9:.1f} after")
    print(f"bf16 matmul peak (2048^2): {bf16_peak / 1e9:.1f} GFLOP/s before, {bf16_after / 1e9:.1f} after")
    print(
        f"achieved in forwards ({models.policy.dtype}): {achieved / 1e9:.1f} GFLOP/s = {achieved / best:.2f} of the "
        f"fp32 peak, {achieved / bf16_best:.2f} of the bf16 peak "
        f"({meter.dense_flops / meter.seconds / best:.2f} of fp32 counting parameters only); "
        f"over the whole wall time: {meter.flops / wall / best:.2f} of fp32, {meter.flops / wall / bf16_best:.2f} of bf16"
    )
    if plain_forward:
        flat = [{**row, "response": g["response"]} for row in rows for g in row["given"]]
        plain, plain_tokens = plain_forward_seconds(policy, flat, config.max_length)
        print(
            f"one plain fp32 forward over instruction + reference + answer (batches of 8, last logits only, cut to "
            f"{config.max_length} tokens): {plain:.1f} s, {plain_tokens} tokens with padding; labeling is "
            f"{plain / wall:.2f}x its speed (target >= 2x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="gemma-3-270m")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=768)
    parser.add_argument("--scaling", action="store_true")
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--given", action="store_true", help="label --n given responses of the AlpacaEval train pool")
    parser.add_argument("--chunk_size", type=int, default=8, help="--given: instructions per chunk")
    parser.add_argument("--num_threads", type=int, default=None)
    parser.add_argument(
        "--noref_baseline", action="store_true", help="--given: also the reference-free column (off, as in label)"
    )
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"), help="--given: as label")
    parser.add_argument(
        "--label_max_length", type=int, default=None, help="--given: label's --max_length (its default)"
    )
    parser.add_argument(
        "--no_plain_forward", action="store_true", help="--given: skip the plain fp32 forward baseline"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    if args.given:
        bench_given(
            args.policy,
            args.n,
            args.chunk_size,
            noref_baseline=args.noref_baseline,
            dtype=args.dtype,
            max_length=args.label_max_length,
            plain_forward=not args.no_plain_forward,
        )
    elif args.scaling:
        bench_scaling(args.policy, [(4, 1), (8, 1), (8, 2), (16, 2)], args.max_new_tokens)
    else:
        bench_forward_vs_generate(args.policy, args.n, args.batch_size, args.max_length)


if __name__ == "__main__":
    main()
