"""How fast does ``SelfJudge.score`` score a table, against the two obvious alternatives?

1. a per-example loop with the same model (format, tokenize, one forward per pair): what a user writes first;
   target: ``SelfJudge.score`` is >= 5x faster;
2. a raw forward over batches that were formatted, tokenized, sorted and padded beforehand (only the model runs):
   the ceiling for this model and batch size; target: ``SelfJudge.score`` reaches >= 80% of its throughput,
   i.e. formatting, tokenizing, padding and bookkeeping cost little.

The judge is a real judge-sized model: a one-label sequence-classification head on the offline all-MiniLM-L6-v2
encoder (default) or on SmolLM2-135M-Instruct (``--model smollm2-135m-instruct``). The head is freshly initialised,
which does not matter for speed; the three methods' scores are checked to agree.

    python bench/bench_scoring.py                       # 512 pairs, MiniLM, batch 16
    python bench/bench_scoring.py --model smollm2-135m-instruct --pairs 256
    python bench/bench_scoring.py --judge outputs/quickstart/judge --eval_set alpaca_eval   # bf16 vs fp32, every row
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from selfj_trl.judge import SelfJudge  # noqa: E402


WORDS = (
    "the a of to and in is it that for on with as was by this be are from at or an have not but they which one "
    "you all were her she there would their we him been has when who will more no if out so said what up its about "
    "into than them can only other new some could time these two may then do first any my now such like our over "
    "man me even most made after also did many before must through back years where much your way well down should "
    "because each just those people how too little state good very make world still own see men work long get here "
    "between both life being under never day same another know while last might us great old year off come since "
    "against go came right used take three explain write summarize python code function list answer question"
).split()


def make_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Instructions of 5-40 words and responses of 0-300 words (log-uniform-ish: many short, some long)."""
    rng = random.Random(seed)
    instructions, responses = [], []
    for _ in range(n):
        instructions.append(" ".join(rng.choices(WORDS, k=rng.randint(5, 40))) + "?")
        length = int(round(300 ** rng.random())) - 1
        responses.append(" ".join(rng.choices(WORDS, k=length)))
    return instructions, responses


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def per_example_loop(judge: SelfJudge, instructions: list[str], responses: list[str]) -> list[float]:
    """The naive way: format, tokenize and run the model one pair at a time."""
    scores = []
    with torch.inference_mode():
        for instruction, response in zip(instructions, responses, strict=True):
            ids = judge.view_ids(instruction, response)
            input_ids = torch.tensor([ids], device=judge.device)
            scores.append(judge.model(input_ids=input_ids).logits[0, 0].item())
    return scores


def prebatch(judge: SelfJudge, instructions: list[str], responses: list[str], batch_size: int) -> tuple[list, int]:
    """Exactly SelfJudge's batches (sorted, right-padded), built ahead of time: the raw-forward baseline's input."""
    ids = [judge.view_ids(i, r) for i, r in zip(instructions, responses, strict=True)]
    order = sorted(range(len(ids)), key=lambda k: len(ids[k]), reverse=True)
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = len(ids[chunk[0]])
        input_ids = torch.full((len(chunk), width), judge.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, k in enumerate(chunk):
            input_ids[row, : len(ids[k])] = torch.tensor(ids[k])
            mask[row, : len(ids[k])] = 1
        batches.append((chunk, input_ids.to(judge.device), mask.to(judge.device)))
    return batches, sum(len(x) for x in ids)


def raw_forward(judge: SelfJudge, batches, n: int) -> list[float]:
    scores = [0.0] * n
    with torch.inference_mode():
        for chunk, input_ids, mask in batches:
            values = judge.model(input_ids=input_ids, attention_mask=mask).logits[:, 0].float().cpu().tolist()
            for k, v in zip(chunk, values, strict=True):
                scores[k] = v
    return scores


class TokenMeter:
    """Tokens (with padding) through the judge's forward, counted by a hook."""

    def __init__(self, model):
        self.tokens = 0
        model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.tokens += ids.numel()


def dtype_agreement(judge_path: str, eval_set: str, batch_size: int, device: str | None) -> int:
    """Score EVERY row of a held-out set (student view) with the judge in fp32 and in bf16; print rows per hour,
    achieved FLOP/s (2 x non-embedding parameters x tokens, padding included: the work the cores did) against the
    same run's fp32 and bf16 matmul peaks, and how closely the two precisions' scores agree."""
    from hardware import non_embedding_parameters, peak_line, peaks

    from selfj_trl.eval_sets import load_eval_set
    from selfj_trl.stats import spearman

    data = load_eval_set(eval_set)
    if data.kind != "pointwise":
        raise SystemExit(f"{eval_set} is a pairwise set; name a pointwise one (alpaca_eval, mtbench, prometheus)")
    before = peaks()
    scores, rates = {}, {}
    for dtype in ("float32", "bfloat16"):
        judge = SelfJudge.from_pretrained(judge_path, device=device, dtype=dtype)
        meter = TokenMeter(judge.model)
        judge.score(data.instructions[:32], data.responses[:32], batch_size=batch_size)  # warm-up
        meter.tokens = 0
        t, scores[dtype] = timed(
            lambda judge=judge: judge.score(data.instructions, data.responses, batch_size=batch_size)
        )
        flops = 2.0 * non_embedding_parameters(judge.model) * meter.tokens
        rates[dtype] = (t, flops / t)
    best, line = peak_line(before, peaks())
    print(f"judge={judge_path} set={eval_set} ({len(data)} rows, every row) threads={torch.get_num_threads()}")
    print(line)
    for dtype, (t, achieved) in rates.items():
        print(
            f"  {dtype:<9} {t:7.1f} s  {3600 * len(data) / t:9.0f} rows/hour  {achieved / 1e9:6.1f} GFLOP/s = "
            f"{achieved / best['fp32']:.2f} of the fp32 peak, {achieved / best['bf16']:.2f} of the bf16 peak"
        )
    a, b = scores["float32"], scores["bfloat16"]
    diff = [abs(x - y) for x, y in zip(a, b, strict=True)]
    print(
        f"bf16 vs fp32 scores: Spearman {spearman(a, b):.5f} (target >= 0.999), max |diff| {max(diff):.4f}, "
        f"mean |diff| {statistics.fmean(diff):.4f} (score sd {statistics.pstdev(a):.3f}); bf16 "
        f"{rates['float32'][0] / rates['bfloat16'][0]:.2f}x faster"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all-minilm-l6-v2", help="offline alias, folder or Hub id")
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of the batched methods (best kept)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--judge", default=None, help="a trained judge: score --eval_set whole in fp32 and bf16 and compare instead"
    )
    parser.add_argument("--eval_set", default="alpaca_eval")
    args = parser.parse_args(argv)
    if args.judge:
        return dtype_agreement(args.judge, args.eval_set, args.batch_size, args.device)

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the fresh score head's "newly initialized" notice is expected here
    judge = SelfJudge.from_pretrained(args.model, device=args.device)
    instructions, responses = make_pairs(args.pairs, args.seed)
    batches, n_tokens = prebatch(judge, instructions, responses, args.batch_size)
    padded = sum(ids.numel() for _, ids, _ in batches)
    print(
        f"model={args.model} ({sum(p.numel() for p in judge.model.parameters()) / 1e6:.1f}M params, "
        f"{'chat' if judge.chat else 'plain'} format) device={judge.device} threads={torch.get_num_threads()}"
    )
    lengths = sorted(len(judge.view_ids(i, r)) for i, r in zip(instructions, responses, strict=True))
    print(
        f"pairs={args.pairs} tokens={n_tokens} (per pair min {lengths[0]}, median {lengths[len(lengths) // 2]}, "
        f"max {lengths[-1]}) batch_size={args.batch_size} padding={1 - n_tokens / padded:.1%} of padded batches"
    )

    # warm-up (allocator, kernels) on a slice
    judge.score(instructions[:32], responses[:32], batch_size=args.batch_size)
    per_example_loop(judge, instructions[:8], responses[:8])

    # Interleaved rounds, best time of each: on a shared machine, other jobs only ever add time, so the minimum is
    # the least noisy estimate, and interleaving exposes both methods to the same background load.
    score_times, raw_times = [], []
    for _ in range(args.repeats):
        t, s_score = timed(
            lambda: judge.score(instructions, responses, batch_size=args.batch_size, show_progress=False)
        )
        score_times.append(t)
        t, s_raw = timed(lambda: raw_forward(judge, batches, args.pairs))
        raw_times.append(t)
    t_score, t_raw = min(score_times), min(raw_times)
    t_loop, s_loop = timed(lambda: per_example_loop(judge, instructions, responses))

    diff_loop = max(abs(a - b) for a, b in zip(s_score, s_loop, strict=True))
    diff_raw = max(abs(a - b) for a, b in zip(s_score, s_raw, strict=True))
    rate = lambda t: args.pairs / t  # noqa: E731
    print(
        f"times per round: score {[round(t, 2) for t in score_times]}, raw {[round(t, 2) for t in raw_times]} "
        f"(median {statistics.median(score_times):.2f} / {statistics.median(raw_times):.2f} s)"
    )
    print(f"SelfJudge.score (batched)   {t_score:8.3f} s  {rate(t_score):8.1f} pairs/s")
    print(f"per-example loop            {t_loop:8.3f} s  {rate(t_loop):8.1f} pairs/s")
    print(f"raw forward, pre-batched    {t_raw:8.3f} s  {rate(t_raw):8.1f} pairs/s")
    print(f"speed-up over the loop:     {t_loop / t_score:6.2f}x   (target >= 5x)")
    print(f"share of raw throughput:    {t_raw / t_score:6.1%}   (target >= 80%)")
    print(f"max |score difference|: vs loop {diff_loop:.2e}, vs raw {diff_raw:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
