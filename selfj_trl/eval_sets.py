"""The held-out sets a judge is evaluated on, loaded into one shape so every metric reads the same arrays.

Two kinds of set:

* :class:`PointwiseSet`: (instruction, response) rows with an external quality score (GPT-4's win probability
  against a reference, or a GPT-4 grade). Correlation, selective following and model ranking read these.
* :class:`PairwiseSet`: (instruction, response_a, response_b) with a human preference label "A" | "B" | "tie".

The built-in sets live in the project's shared data folder (``../shared/data``, see its README) and are only read
from there, never copied; the package works without it, and asking for a built-in set then says so in one line.
Any table with instruction/response and a quality column (file, ``save_to_disk`` folder, Hub id or ``Dataset``)
is a pointwise set too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from .io import load_table, require_columns, shared_data_dir
from .errors import SelfJInputError
from .prompts import check_text

ALPACA_EVAL = "alpaca_eval"
MTBENCH = "mtbench"
PROMETHEUS = "prometheus"
HUMAN_PAIRWISE = "human_pairwise"
BUILTIN_SETS = (ALPACA_EVAL, MTBENCH, PROMETHEUS, HUMAN_PAIRWISE)
_ALIASES = {
    "alpaca_eval": ALPACA_EVAL, "alpaca_eval_gpt4": ALPACA_EVAL, "alpacaeval": ALPACA_EVAL,
    "mtbench": MTBENCH, "mt_bench": MTBENCH, "mtbench_gpt4": MTBENCH,
    "prometheus": PROMETHEUS, "prometheus_gpt4": PROMETHEUS,
    "human_pairwise": HUMAN_PAIRWISE, "human": HUMAN_PAIRWISE,
}

#: AlpacaEval entries built to fool the GPT-4 annotator (see the data README): the gaming check watches them.
ADVERSARIAL_MODELS = ("NullModel", "gpt4_gamed")

#: Columns tried, in order, when a custom set does not name its quality column.
QUALITY_CANDIDATES = ("quality", "gpt4_win_prob", "label", "score")

#: Subsets of the human pairwise set that LLMBar built to punish superficial preferences such as length.
LLMBAR_ADVERSARIAL = ("llmbar_adv_neighbor", "llmbar_adv_gptinst", "llmbar_adv_gptout", "llmbar_adv_manual")


@dataclass
class PointwiseSet:
    """Rows scored one at a time against an external quality score."""

    name: str
    title: str
    quality_name: str
    instructions: list[str]
    responses: list[str]
    references: list[str | None]
    quality: np.ndarray
    groups: list[str]
    models: list[str | None]
    subsets: list[str | None]
    #: AlpacaEval only: each instruction's reference answer, scored as a response to compare J(x, y) with J(x, r).
    group_references: dict[str, str] | None = None
    #: AlpacaEval only: the leaderboard win rate per model (over all 805 instructions).
    leaderboard: dict[str, float] | None = None
    adversarial: tuple[str, ...] = ()
    split: str | None = None
    notes: list[str] = field(default_factory=list)
    kind: str = "pointwise"

    def __len__(self) -> int:
        return len(self.responses)


@dataclass
class PairwiseSet:
    """Pairs of responses to one instruction with a preference label."""

    name: str
    title: str
    instructions: list[str]
    responses_a: list[str]
    responses_b: list[str]
    labels: list[str]
    subsets: list[str]
    references: list[str | None]
    notes: list[str] = field(default_factory=list)
    kind: str = "pairwise"

    def __len__(self) -> int:
        return len(self.labels)


EvalSet = PointwiseSet | PairwiseSet


# ---------------------------------------------------------------------------------------------------------------
# Locating the shared data and slicing it
# ---------------------------------------------------------------------------------------------------------------
def data_root(data_dir: str | Path | None = None) -> Path:
    """The shared data folder, or a one-line error saying how to point at it."""
    if data_dir is not None:
        root = Path(data_dir)
        if not root.is_dir():
            raise SelfJInputError(f"data_dir {str(root)!r} is not a folder; pass the folder that holds alpaca_eval_gpt4/.")
        return root
    root = shared_data_dir()
    if root is None:
        raise SelfJInputError(
            "the held-out data folder (../shared/data next to the checkout) was not found; set SELFJ_SHARED_DATA or "
            "--data_dir to it, or evaluate on your own dataset path with instruction/response and a quality column."
        )
    return root


def _file(root: Path, relative: str) -> Path:
    path = root / relative
    if not path.is_file():
        raise SelfJInputError(f"{path} is missing; the shared data folder {root} looks incomplete.")
    return path


def sample_groups(groups: list[str], max_groups: int | None, seed: int) -> np.ndarray:
    """Row mask keeping every row of ``max_groups`` instructions drawn with a fixed seed (all rows when None).

    Slicing by instruction rather than by row keeps every model's answer to the kept instructions, so per-model
    means and the per-instruction reference comparison stay meaningful on a quick run.
    """
    keep = np.ones(len(groups), dtype=bool)
    if max_groups is None:
        return keep
    if max_groups <= 0:
        raise SelfJInputError(f"max_instructions must be a positive integer, got {max_groups}.")
    unique = sorted(set(groups))
    if max_groups >= len(unique):
        return keep
    chosen = set(np.random.default_rng(seed).choice(len(unique), size=max_groups, replace=False).tolist())
    kept = {unique[i] for i in chosen}
    return np.array([g in kept for g in groups], dtype=bool)


def _pick(values: list[Any], mask: np.ndarray) -> list[Any]:
    return [v for v, k in zip(values, mask) if k]


# ---------------------------------------------------------------------------------------------------------------
# Built-in sets
# ---------------------------------------------------------------------------------------------------------------
def load_alpaca_eval(
    data_dir: str | Path | None = None, split: str = "test", max_instructions: int | None = None, seed: int = 0
) -> PointwiseSet:
    """AlpacaEval responses of 17 models with GPT-4-turbo's win probability against the GPT-4 reference.

    ``split="test"`` (koala, vicuna, selfinstruct: 488 instructions) is the held-out set; ``"train"`` exists for
    in-domain sanity checks only and the report says so, since judges may have been trained on it.
    """
    if split not in ("test", "train", "all"):
        raise SelfJInputError(f"split must be 'test' (held out), 'train' or 'all', got {split!r}.")
    root = data_root(data_dir)
    instructions = load_table(str(_file(root, "alpaca_eval_gpt4/instructions.jsonl")))
    responses = load_table(str(_file(root, "alpaca_eval_gpt4/responses.jsonl")))
    board = load_table(str(_file(root, "alpaca_eval_gpt4/leaderboard.csv")))
    by_id = {row["id"]: row for row in instructions if split == "all" or row["split"] == split}
    rows = sorted((r for r in responses if r["id"] in by_id), key=lambda r: (r["id"], r["model"]))
    if not rows:
        raise SelfJInputError(f"AlpacaEval has no responses in split {split!r}.")
    groups = [r["id"] for r in rows]
    mask = sample_groups(groups, max_instructions, seed)
    rows = _pick(rows, mask)
    kept_ids = sorted({r["id"] for r in rows})
    notes = []
    if split != "test":
        notes.append(
            f"split={split!r}: NOT held out; judges trained on AlpacaEval's train split have seen these instructions."
        )
    if max_instructions is not None:
        notes.append(f"quick run: {len(kept_ids)} instructions drawn with seed {seed}, all models' answers kept.")
    return PointwiseSet(
        name=ALPACA_EVAL,
        title=f"AlpacaEval (GPT-4-turbo annotator), {split} split",
        quality_name="gpt4_win_prob",
        instructions=[by_id[r["id"]]["instruction"] for r in rows],
        responses=[r["response"] for r in rows],
        references=[by_id[r["id"]]["reference"] for r in rows],
        quality=np.array([r["gpt4_win_prob"] for r in rows], dtype=float),
        groups=[r["id"] for r in rows],
        models=[r["model"] for r in rows],
        subsets=[by_id[r["id"]]["subset"] for r in rows],
        group_references={i: by_id[i]["reference"] for i in kept_ids},
        leaderboard={row["model"]: float(row["win_rate"]) for row in board},
        adversarial=ADVERSARIAL_MODELS,
        split=split,
        notes=notes,
    )


def _graded_set(
    name: str, title: str, relative: str, group_key, data_dir, max_instructions, seed, note: str
) -> PointwiseSet:
    root = data_root(data_dir)
    table = load_table(str(_file(root, relative)))
    require_columns(table, ["instruction", "response", "label", "model"], title)
    rows = list(table)
    groups = [group_key(r) for r in rows]
    mask = sample_groups(groups, max_instructions, seed)
    rows, groups = _pick(rows, mask), _pick(groups, mask)
    notes = [note]
    if max_instructions is not None:
        notes.append(f"quick run: {len(set(groups))} questions drawn with seed {seed}.")
    return PointwiseSet(
        name=name,
        title=title,
        quality_name="label",
        instructions=[r["instruction"] for r in rows],
        responses=[r["response"] for r in rows],
        references=[r.get("reference") for r in rows],
        quality=np.array([r["label"] for r in rows], dtype=float),
        groups=groups,
        models=[r["model"] for r in rows],
        subsets=[r.get("category") for r in rows],
        split="test",
        notes=notes,
    )


def load_mtbench(data_dir=None, max_instructions: int | None = None, seed: int = 0) -> PointwiseSet:
    """MT-Bench turn-1 answers of 22 models with GPT-4 single-answer grades 1-10 (the Self-J paper's kind of test)."""
    return _graded_set(
        MTBENCH, "MT-Bench turn 1, GPT-4 grade 1-10", "mtbench_gpt4/mtbench_gpt4_single_turn1.jsonl",
        lambda r: str(r["question_id"]), data_dir, max_instructions, seed,
        "references exist only for math, reasoning and coding questions (what GPT-4 saw).",
    )


def load_prometheus(data_dir=None, max_instructions: int | None = None, seed: int = 0) -> PointwiseSet:
    """Prometheus' MT-Bench (turn 2) and Vicuna-Bench items with GPT-4 rubric scores 1-5 (mean of three)."""
    return _graded_set(
        PROMETHEUS, "Prometheus MT-Bench/Vicuna-Bench, GPT-4 rubric score 1-5",
        "prometheus_gpt4/prometheus_gpt4_pointwise_mtbench_vicuna.jsonl",
        lambda r: f"{r['benchmark']}-{r['question_id']}", data_dir, max_instructions, seed,
        "judges see no rubric: they score (instruction, response) only, as in use.",
    )


def load_human_pairwise(data_dir=None, max_instructions: int | None = None, seed: int = 0) -> PairwiseSet:
    """1,884 human preferences (LLMBar Natural/Adversarial, MT-Bench experts, FairEval, LLMEval2, PandaLM)."""
    root = data_root(data_dir)
    table = load_table(str(_file(root, "human_pairwise/human_pairwise_llmbar_mtbench_pandalm.jsonl")))
    return _pairwise_from_table(HUMAN_PAIRWISE, "Human pairwise preferences", table, max_instructions, seed)


def _pairwise_from_table(name: str, title: str, table: Dataset, max_instructions, seed) -> PairwiseSet:
    require_columns(table, ["instruction", "response_a", "response_b", "label"], title,
                    "A pairwise set needs label 'A', 'B' or 'tie' per row.")
    rows = list(table)
    bad = sorted({str(r["label"]) for r in rows} - {"A", "B", "tie"})
    if bad:
        raise SelfJInputError(f"{title}: `label` must be 'A', 'B' or 'tie', found {bad[:5]}.")
    ids = [str(r.get("id", i)) for i, r in enumerate(rows)]
    mask = sample_groups(ids, max_instructions, seed)
    rows = _pick(rows, mask)
    notes = [] if max_instructions is None else [f"quick run: {len(rows)} pairs drawn with seed {seed}."]
    return PairwiseSet(
        name=name,
        title=title,
        instructions=[r["instruction"] for r in rows],
        responses_a=[r["response_a"] for r in rows],
        responses_b=[r["response_b"] for r in rows],
        labels=[r["label"] for r in rows],
        subsets=[str(r.get("subset") or "all") for r in rows],
        references=[r.get("reference") for r in rows],
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------------------------
# Any table with instruction/response and a quality column
# ---------------------------------------------------------------------------------------------------------------
def load_custom_set(
    source: Any,
    quality_column: str | None = None,
    split: str = "test",
    max_instructions: int | None = None,
    seed: int = 0,
    name: str | None = None,
) -> EvalSet:
    """A user's table as an evaluation set (pairwise when it has response_a/response_b/label)."""
    table = load_table(source, split)
    display = name or (Path(str(source)).stem if isinstance(source, (str, Path)) else "custom")
    if "response_a" in table.column_names and "response" not in table.column_names:
        return _pairwise_from_table(display, display, table, max_instructions, seed)
    if quality_column is None:
        quality_column = next((c for c in QUALITY_CANDIDATES if c in table.column_names), None)
        if quality_column is None:
            raise SelfJInputError(
                f"{display} has no quality column (tried {list(QUALITY_CANDIDATES)}); it has {table.column_names}. "
                "Pass --quality_column NAME."
            )
    require_columns(table, ["instruction", "response", quality_column], display,
                    "Rename columns with Dataset.rename_column or pass --quality_column.")
    quality = _numeric_column(table[quality_column], quality_column, display)
    if not np.isfinite(quality).any():
        raise SelfJInputError(f"{display}: column {quality_column!r} holds no finite number.")
    for i, (ins, resp) in enumerate(zip(table["instruction"], table["response"])):
        check_text(ins, f"instruction (row {i})")
        check_text(resp, f"response (row {i})", allow_empty=True)
    cols = table.column_names
    group_col = next((c for c in ("question_id", "group", "instruction_id") if c in cols), None)
    groups = [str(g) for g in table[group_col]] if group_col else list(table["instruction"])
    mask = sample_groups(groups, max_instructions, seed)
    def col(c):  # noqa: E306 - tiny local helper
        return _pick(table[c], mask) if c in cols else [None] * int(mask.sum())
    notes = [] if group_col else ["no question_id/group column: rows are grouped by instruction text."]
    if not np.isfinite(quality).all():
        notes.append(f"{int((~np.isfinite(quality)).sum())} rows without a finite {quality_column} are left out.")
        mask &= np.isfinite(quality)
    return PointwiseSet(
        name=display,
        title=f"{display} ({quality_column})",
        quality_name=quality_column,
        instructions=col("instruction"),
        responses=col("response"),
        references=col("reference"),
        quality=quality[mask],
        groups=_pick(groups, mask),
        models=col("model"),
        subsets=col("subset") if "subset" in cols else col("category"),
        split=split,
        notes=notes,
    )


def _numeric_column(values: list[Any], column: str, what: str) -> np.ndarray:
    try:
        return np.array([np.nan if v is None else v for v in values], dtype=float)
    except (TypeError, ValueError) as err:
        raise SelfJInputError(f"{what}: quality column {column!r} must hold numbers ({err}).") from None


def resolve_eval_set_name(spec: str) -> str | None:
    """The built-in set a name refers to, or None when it is not a built-in name."""
    return _ALIASES.get(spec.strip().lower())


def load_eval_set(
    spec: Any,
    *,
    data_dir: str | Path | None = None,
    split: str = "test",
    max_instructions: int | None = None,
    seed: int = 0,
    quality_column: str | None = None,
) -> EvalSet:
    """A built-in set by name, an already loaded set, or a user's table (path, Hub id or ``Dataset``)."""
    if isinstance(spec, (PointwiseSet, PairwiseSet)):
        return spec
    if isinstance(spec, Dataset):
        return load_custom_set(spec, quality_column, split, max_instructions, seed)
    if not isinstance(spec, (str, Path)) or not str(spec).strip():
        raise SelfJInputError(f"eval set must be a name, a path or a Dataset, got {type(spec).__name__}.")
    builtin = resolve_eval_set_name(str(spec))
    if builtin == ALPACA_EVAL:
        return load_alpaca_eval(data_dir, split, max_instructions, seed)
    if builtin == MTBENCH:
        return load_mtbench(data_dir, max_instructions, seed)
    if builtin == PROMETHEUS:
        return load_prometheus(data_dir, max_instructions, seed)
    if builtin == HUMAN_PAIRWISE:
        return load_human_pairwise(data_dir, max_instructions, seed)
    text = str(spec)
    looks_like_hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if Path(text).exists() or looks_like_hub_id:
        return load_custom_set(text, quality_column, split, max_instructions, seed)
    raise SelfJInputError(
        f"unknown eval set {text!r}; use one of {list(BUILTIN_SETS)} or a dataset path / Hub id with "
        "instruction, response and a quality column."
    )
