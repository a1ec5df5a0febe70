"""Time per optimizer step: SelfJRewardTrainer against TRL's stock RewardTrainer on the same model and batch size.

Self-J puts both views of every row (student and the longer, reference-carrying teacher view) through the model in
one forward, so a pointwise step costs two sequences per row, like a stock pairwise step (chosen + rejected). The
target is a ratio of at most 2.1x: two views should cost two forwards and nothing more.

    python bench/bench_trainer.py                      # all-MiniLM-L6-v2 as a BERT sequence classifier, batch 8
    python bench/bench_trainer.py --batch_size 16 --steps 12 --rounds 3

Synthetic rows (instruction ~25 words, reference and responses ~70 words) keep the figure independent of any data
folder. Each variant is built and timed ``--rounds`` times, interleaved, so that load from other processes on the
machine hits every variant alike; the first ``--warmup`` steps of every run are dropped, and the median step time
is reported.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoTokenizer, TrainerCallback  # noqa: E402
from trl import RewardConfig, RewardTrainer  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from hardware import non_embedding_parameters, peak_line, peaks  # noqa: E402

from selfj_trl.judge_views import format_student_view, tokenize_view  # noqa: E402
from selfj_trl.models import resolve_model  # noqa: E402
from selfj_trl.trainer import SelfJDataCollator, SelfJRewardConfig, SelfJRewardTrainer  # noqa: E402


_WORDS = (
    "the sea is blue and deep answer question model data good bad simple clear write explain reason step "
    "result number list short long first second because therefore example code python function value"
).split()


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n_words))


def labeled_rows(n_instructions: int, samples: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n_instructions):
        instruction, reference = _text(rng, rng.randint(15, 35)), _text(rng, rng.randint(50, 90))
        for k in range(samples):
            rows.append(
                {
                    "instruction": instruction,
                    "reference": reference,
                    "response": _text(rng, rng.randint(50, 90)),
                    "label": rng.uniform(0, 9),
                    "instruction_id": i,
                    "sample_index": k,
                }
            )
    return rows


def stock_pairs(rows: list[dict], tokenizer, max_length: int) -> Dataset:
    """Pre-tokenized preference pairs of student views (two responses to one instruction), as RewardTrainer takes."""
    chosen, rejected = [], []
    for a, b in zip(rows[0::2], rows[1::2], strict=False):
        views = [
            tokenize_view(tokenizer, format_student_view(tokenizer, r["instruction"], r["response"]), max_length)
            for r in (a, b)
        ]
        chosen.append(views[0])
        rejected.append(views[1])
    return Dataset.from_dict({"chosen_ids": chosen, "rejected_ids": rejected})


class StepTimer(TrainerCallback):
    """Wall-clock and process CPU time at the end of every optimizer step.

    CPU time (all threads of this process) barely moves when other jobs share the cores, so on a busy machine its
    ratio is the fairer one; on a quiet machine the two agree.
    """

    def __init__(self):
        self.ends: list[tuple[float, float]] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.ends = [(time.perf_counter(), time.process_time())]

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append((time.perf_counter(), time.process_time()))


class JointPaddingCollator(SelfJDataCollator):
    """The earlier layout, kept here as the baseline: both views padded to the longest view of the batch (the
    teacher's), so the student's forward pays for the reference's width too."""

    def torch_call(self, examples):
        out = super().torch_call(examples)
        width = max(out["input_ids"].shape[1], out["teacher_input_ids"].shape[1])
        for prefix in ("", "teacher_"):
            extra = width - out[f"{prefix}input_ids"].shape[1]
            out[f"{prefix}input_ids"] = F.pad(out[f"{prefix}input_ids"], (0, extra), value=self.pad_token_id)
            out[f"{prefix}attention_mask"] = F.pad(out[f"{prefix}attention_mask"], (0, extra), value=0)
        return out


def pool_rows(n: int, seed: int = 0) -> list[dict] | None:
    """AlpacaEval TRAIN-pool answers (real lengths: what the recipe trains on), random labels (a label does not
    change a step's cost); None without the data folder."""
    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval_gpt4"
    if not folder.is_dir():
        return None
    from selfj_trl.labeling.rows import load_alpaca_train_pool

    pool = load_alpaca_train_pool(folder)
    rng = random.Random(seed)
    rows = [
        {
            "instruction": r["instruction"],
            "reference": r["reference"],
            "response": r["response"],
            "label": rng.uniform(0, 9),
            "instruction_id": r["id"],
        }
        for r in pool.select(range(min(n, len(pool))))
    ]
    return rows


def time_variant(
    name: str, model_path: str, rows: list[dict], args_kw: dict, batch_size: int
) -> list[tuple[float, float]]:
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        common = dict(output_dir=out, per_device_train_batch_size=batch_size, **args_kw)
        if name == "stock RewardTrainer (pairwise)":
            tokenizer = AutoTokenizer.from_pretrained(model_path)
            fields = RewardConfig.__dataclass_fields__
            no_ckpt = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
            args = RewardConfig(
                bf16=torch.cuda.is_available(), use_cpu=not torch.cuda.is_available(), **{no_ckpt: False}, **common
            )
            trainer = RewardTrainer(
                model_path,
                args=args,
                train_dataset=stock_pairs(rows, tokenizer, args.max_length),
                processing_class=tokenizer,
                callbacks=[timer],
            )
        else:
            loss_type = "pairwise" if "pairwise" in name else "pointwise"
            precision = True if " bf16" in name else False if " fp32" in name else None  # None: the default
            sampling = {"train_sampling_strategy": "group_by_length"} if "grouped" in name else {}
            collator = JointPaddingCollator() if "padded together" in name else None
            args = SelfJRewardConfig(loss_type=loss_type, bf16=precision, **sampling, **common)
            trainer = SelfJRewardTrainer(
                model_path,
                args=args,
                train_dataset=Dataset.from_list(rows),
                callbacks=[timer],
                data_collator=collator,
            )
            if collator is not None:
                collator.pad_token_id = trainer.processing_class.pad_token_id
        tokens = []
        trainer.model.register_forward_pre_hook(
            lambda m, args, kw: tokens.append(kw["input_ids"].numel()) if m.training else None, with_kwargs=True
        )
        trainer.train()
        TOKENS[name] = TOKENS.get(name, []) + [sum(tokens) / max(trainer.state.global_step, 1)]
        PARAMS[name] = non_embedding_parameters(trainer.model)
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(timer.ends, timer.ends[1:], strict=False)]


#: Per variant: tokens (padding included) through the model per optimizer step, and non-embedding parameters.
TOKENS: dict[str, list[float]] = {}
PARAMS: dict[str, int] = {}


def compare_precision(a: argparse.Namespace, model_path: str, rows: list[dict], args_kw: dict) -> int:
    """The judge training step as it was (fp32, both views padded together, random batches) against bf16 mixed
    precision (autocast; fp32 master weights) with each view padded on its own, with and without length-grouped
    batches (``--train_sampling_strategy group_by_length``), same rows."""
    variants = [
        "pairwise fp32, padded together",
        "pairwise bf16, padded together",
        "pairwise bf16",
        "pairwise bf16, grouped",
    ]
    times: dict[str, list[float]] = {v: [] for v in variants}
    before = peaks()
    for _ in range(a.rounds):
        for v in variants:
            times[v] += [t[0] for t in time_variant(v, model_path, rows, args_kw, a.batch_size)[a.warmup :]]
    best, line = peak_line(before, peaks())
    print(f"model: {a.model}, batch {a.batch_size} rows, max_length {a.max_length}, threads {torch.get_num_threads()}")
    print(line)
    print("achieved = 6 x non-embedding parameters x tokens through the model (padding included) / step time")
    med = {v: statistics.median(ts) for v, ts in times.items()}
    for v in variants:
        tokens = statistics.fmean(TOKENS[v])
        achieved = 6.0 * PARAMS[v] * tokens / med[v]
        print(
            f"  {v:<34} median {med[v] * 1000:8.1f} ms/step wall  {med[variants[0]] / med[v]:5.2f}x  "
            f"{3600 * a.batch_size / med[v]:7.0f} rows/hour  {tokens:6.0f} tokens/step  "
            f"{achieved / 1e9:6.1f} GFLOP/s = {achieved / best['fp32']:.2f} of fp32, {achieved / best['bf16']:.2f} of bf16"
        )
    print(f"speed-up over the first (target >= 3x): {med[variants[0]] / min(med.values()):.2f}x")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="all-minilm-l6-v2", help="seq-cls base (alias, folder or Hub id)")
    p.add_argument("--batch_size", type=int, default=8, help="rows (SelfJ) or pairs (stock) per optimizer step")
    p.add_argument("--steps", type=int, default=5, help="timed steps per run, after warm-up")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2, help="interleaved runs per variant")
    p.add_argument("--max_length", type=int, default=512)
    p.add_argument("--with_pairwise", action="store_true", help="also time SelfJ in pairwise mode (4 views/pair)")
    p.add_argument(
        "--precision", action="store_true", help="time SelfJ (pairwise) in fp32 and in bf16 mixed precision instead"
    )
    p.add_argument(
        "--data", choices=("synthetic", "pool"), default="synthetic", help="pool: AlpacaEval train answers' lengths"
    )
    a = p.parse_args(argv)

    model_path = resolve_model(a.model)
    total = a.warmup + a.steps
    rows = pool_rows(4 * total * a.batch_size) if a.data == "pool" else None
    if rows is None:
        rows = labeled_rows(n_instructions=total * a.batch_size, samples=2)  # enough rows that no epoch repeats
    print(f"rows: {'AlpacaEval train pool' if a.data == 'pool' and rows else 'synthetic'}, {len(rows)}")
    args_kw = dict(
        max_steps=total,
        learning_rate=1e-5,
        logging_steps=10_000,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        max_length=a.max_length,
        seed=0,
        dataloader_num_workers=0,
    )
    if a.precision:
        return compare_precision(a, model_path, rows, args_kw)
    variants = ["stock RewardTrainer (pairwise)", "SelfJRewardTrainer (pointwise)"]
    if a.with_pairwise:
        variants.append("SelfJRewardTrainer (pairwise)")
    times: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for r in range(a.rounds):
        for v in variants:
            steps = time_variant(v, model_path, rows, args_kw, a.batch_size)[a.warmup :]
            times[v] += steps
            print(
                f"round {r + 1}/{a.rounds} {v}: median {statistics.median(t[0] for t in steps) * 1000:.0f} ms/step "
                f"wall, {statistics.median(t[1] for t in steps) * 1000:.0f} ms/step CPU",
                file=sys.stderr,
            )

    print(f"model: {a.model} ({model_path})")
    print(
        f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads: {torch.get_num_threads()}, "
        f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, batch: {a.batch_size} rows/pairs, "
        f"{a.steps} timed steps x {a.rounds} rounds after {a.warmup} warm-up"
    )
    med = {
        clock: {v: statistics.median(t[i] for t in ts) for v, ts in times.items()}
        for i, clock in enumerate(("wall", "cpu"))
    }
    for v in variants:
        print(f"  {v:<34} median {med['wall'][v] * 1000:8.1f} ms/step wall  {med['cpu'][v] * 1000:8.1f} ms/step CPU")
    stock = variants[0]
    for clock in ("wall", "cpu"):
        ratio = med[clock]["SelfJRewardTrainer (pointwise)"] / med[clock][stock]
        line = f"ratio ({clock:>4}) SelfJ pointwise / stock pairwise: {ratio:.2f}x (target <= 2.1x)"
        if a.with_pairwise:
            line += f"; SelfJ pairwise / stock: {med[clock]['SelfJRewardTrainer (pairwise)'] / med[clock][stock]:.2f}x"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
