"""``selfj-trl evaluate``: is a judge any good, on data nobody here wrote, next to the baselines it must beat?

A *scorer* is anything with ``score(instructions, responses, references=None, batch_size=...) -> list[float]``:
a trained judge (:class:`selfj_trl.judge.SelfJudge`, loaded from a folder or Hub id) or a baseline by name:

* ``length`` (characters; ``length:words`` for whitespace words): what a judge that merely likes long answers does;
* ``random`` (``random:SEED``): a seeded score per row, the floor;
* ``cosine`` (``cosine:EMBEDDER``): cosine of response and reference embeddings (all-MiniLM-L6-v2 by default). It
  needs the reference, which a judge never sees, so it is an oracle-ish baseline; rows without one are left out;
* ``self_eval_noref:POLICY``: the policy's own digit self-evaluation, prompted without the reference (what Self-J
  distils away from).

Metrics (scipy for the statistics): correlation with the external quality, agreement with GPT-4's verdict against
the reference, model ranking against the AlpacaEval leaderboard with the adversarial entries' ranks (the gaming
check), selective instruction following curves, within-question correlation, human pairwise accuracy beside
"longer answer wins", and cluster-bootstrap confidence intervals. Scores are cached per (scorer, row) in the output
folder, so a second report costs no scoring.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats
from scipy.integrate import trapezoid

from .errors import SelfJInputError
from .eval_sets import (
    LLMBAR_ADVERSARIAL,
    PairwiseSet,
    PointwiseSet,
    load_eval_set,
)
from .models import DEFAULT_EMBEDDER

#: Coverage levels of the selective instruction-following curve (fraction of answers kept).
COVERAGES = tuple(round(c / 100, 2) for c in range(10, 101, 10))
SCORE_CACHE_DIR = "score_cache"
#: Bumped whenever a metric's definition changes, so cached metrics from older code are not reused.
METRICS_VERSION = 4


# ---------------------------------------------------------------------------------------------------------------
# Baseline scorers
# ---------------------------------------------------------------------------------------------------------------
class LengthScorer:
    """Response length: the bias every learned judge is suspected of, as a scorer of its own."""

    needs_reference = False

    def __init__(self, unit: str = "chars"):
        if unit not in ("chars", "words"):
            raise SelfJInputError(f"length baseline unit must be 'chars' or 'words', got {unit!r}.")
        self.unit = unit
        self.name = "length" if unit == "chars" else "length:words"
        self.cache_id = f"length:{unit}"

    def score(self, instructions, responses, references=None, batch_size: int = 0) -> list[float]:
        return [float(len(r) if self.unit == "chars" else len(r.split())) for r in responses]


class RandomScorer:
    """A seeded uniform score derived from the row's text, so it does not depend on row order or batching."""

    needs_reference = False

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.name = "random" if self.seed == 0 else f"random:{self.seed}"
        self.cache_id = f"random:{self.seed}"

    def score(self, instructions, responses, references=None, batch_size: int = 0) -> list[float]:
        out = []
        for ins, resp in zip(instructions, responses):
            key = int(row_hash(ins, resp, None)[:15], 16)
            out.append(float(np.random.default_rng([self.seed, key]).random()))
        return out


class CosineScorer:
    """Cosine of the response's and the reference's sentence embeddings (normalised), as in Self-J's label.

    References repeat across responses to the same instruction, so their embeddings are kept in memory.
    """

    needs_reference = True

    def __init__(self, embedder: str = DEFAULT_EMBEDDER):
        self.embedder = embedder
        self.name = "cosine" if embedder == DEFAULT_EMBEDDER else f"cosine:{embedder}"
        self.cache_id = f"cosine:{embedder}"
        self._model = None
        self._ref_cache: dict[str, np.ndarray] = {}

    def _load(self):
        if self._model is None:
            from .labeling import load_embedder  # the label stage's loader: same model, same checks

            self._model = load_embedder(self.embedder)
        return self._model

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        return np.asarray(
            self._load().encode(texts, batch_size=max(batch_size, 1), normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
        )

    def score(self, instructions, responses, references=None, batch_size: int = 32) -> list[float]:
        if references is None:
            raise SelfJInputError("the cosine baseline needs `references`; this set has none.")
        new_refs = sorted({r for r in references if r is not None and r not in self._ref_cache})
        if new_refs:
            for text, vec in zip(new_refs, self._encode(new_refs, batch_size)):
                self._ref_cache[text] = vec
        resp_vecs = self._encode(list(responses), batch_size)
        return [float(np.dot(v, self._ref_cache[r])) if r is not None else math.nan
                for v, r in zip(resp_vecs, references)]


class SelfEvalScorer:
    """The policy's reference-free digit self-evaluation (expected digit 0-9), via the labeling stage's code."""

    needs_reference = False

    def __init__(self, policy: str, max_length: int | None = 1024):
        self.policy = policy
        self.max_length = max_length
        self.name = f"self_eval_noref:{policy}"
        self.cache_id = f"self_eval_noref:{_fingerprint(policy)}:{max_length}"
        self._loaded = None

    def _load(self):
        if self._loaded is None:
            try:
                from .labeling import load_policy, self_evaluate
            except ImportError as err:
                raise SelfJInputError(
                    "the self_eval_noref baseline needs selfj_trl.labeling.self_evaluate, which this install lacks "
                    f"({err}); drop it from --baselines."
                ) from err
            model, tokenizer = load_policy(self.policy)
            self._loaded = (self_evaluate, model, tokenizer)
        return self._loaded

    def score(self, instructions, responses, references=None, batch_size: int = 8) -> list[float]:
        self_evaluate, model, tokenizer = self._load()
        return list(self_evaluate(model, tokenizer, list(instructions), list(responses), references=None,
                                  batch_size=batch_size, max_length=self.max_length))


def _fingerprint(path_or_id: str) -> str:
    """A judge's identity for the cache: its path plus its files' sizes and times, so a retrained judge re-scores."""
    path = Path(path_or_id)
    if not path.is_dir():
        return path_or_id
    parts = [str(path.resolve())]
    for f in sorted(path.glob("*")):
        if f.is_file() and f.suffix in {".json", ".safetensors", ".bin", ".model", ".txt"}:
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16] + ":" + path.name


BASELINE_HELP = "length, length:words, random, random:SEED, cosine, cosine:EMBEDDER, self_eval_noref:POLICY"


def baseline_scorer(spec: str, embedder: str = DEFAULT_EMBEDDER, seed: int = 0) -> Any | None:
    """The baseline a name stands for, or None when ``spec`` is not a baseline name."""
    name, _, arg = spec.partition(":")
    if name == "length":
        return LengthScorer(arg or "chars")
    if name == "random":
        try:
            return RandomScorer(int(arg) if arg else seed)
        except ValueError:
            raise SelfJInputError(f"random baseline seed must be an integer, got {arg!r}.") from None
    if name == "cosine":
        return CosineScorer(arg or embedder)
    if name in ("self_eval_noref", "self_eval"):
        if not arg:
            raise SelfJInputError("self_eval_noref needs the policy: `self_eval_noref:smollm2-135m-instruct`.")
        return SelfEvalScorer(arg)
    return None


@dataclass
class ScorerEntry:
    """A resolved scorer with the names the report and the cache use."""

    name: str
    cache_id: str
    scorer: Any
    kind: str  # "judge" | "baseline"
    needs_reference: bool = False


def load_judge(path: str) -> Any:
    """A trained judge as a scorer (``SelfJudge.from_pretrained``), with one-line errors for bad paths."""
    looks_like_hub_id = path.count("/") == 1 and not path.startswith((".", "/", "~")) and not Path(path).exists()
    if not Path(path).is_dir() and not looks_like_hub_id:
        raise SelfJInputError(
            f"judge {path!r}: no such folder, and not a baseline name ({BASELINE_HELP}); pass a judge folder or Hub id."
        )
    try:
        from .judge import SelfJudge
    except ImportError as err:
        raise SelfJInputError(f"judge {path!r}: selfj_trl.judge is not available in this install ({err}).") from err
    try:
        return SelfJudge.from_pretrained(path)
    except SelfJInputError:
        raise
    except (OSError, ValueError) as err:
        raise SelfJInputError(f"judge {path!r} could not be loaded ({type(err).__name__}: {err}).") from err


def resolve_scorers(specs: Sequence[Any], embedder: str = DEFAULT_EMBEDDER, seed: int = 0) -> list[ScorerEntry]:
    """Baseline names, judge folders / Hub ids and scorer objects, as uniquely named entries."""
    entries: list[ScorerEntry] = []
    for spec in specs:
        if isinstance(spec, str):
            if not spec.strip():
                raise SelfJInputError("an empty judge / baseline name was given.")
            baseline = baseline_scorer(spec.strip(), embedder, seed)
            if baseline is not None:
                entries.append(ScorerEntry(baseline.name, baseline.cache_id, baseline, "baseline",
                                           baseline.needs_reference))
                continue
            judge = load_judge(spec)
            name = Path(spec.rstrip("/")).name or spec
            entries.append(ScorerEntry(name, "judge:" + _fingerprint(spec), judge, "judge",
                                       bool(getattr(judge, "needs_reference", False))))
        elif callable(getattr(spec, "score", None)):
            name = str(getattr(spec, "name", None) or type(spec).__name__)
            cache_id = str(getattr(spec, "cache_id", None) or f"object:{name}")
            entries.append(ScorerEntry(name, cache_id, spec, getattr(spec, "kind", "judge"),
                                       bool(getattr(spec, "needs_reference", False))))
        else:
            raise SelfJInputError(
                f"judge must be a folder, a Hub id, a baseline name or an object with .score(), got {type(spec).__name__}."
            )
    seen: dict[str, int] = {}
    for e in entries:  # two judges called "judge" in different folders must stay apart in the report
        seen[e.name] = seen.get(e.name, 0) + 1
        if seen[e.name] > 1:
            e.name = f"{e.name}#{seen[e.name]}"
    return entries


# ---------------------------------------------------------------------------------------------------------------
# Score cache
# ---------------------------------------------------------------------------------------------------------------
def row_hash(instruction: str, response: str, reference: str | None) -> str:
    """Identity of a scored row: its texts (the reference only for scorers that read it)."""
    return hashlib.sha1(json.dumps([instruction, response, reference], ensure_ascii=False).encode()).hexdigest()


class ScoreCache:
    """Append-only JSONL of ``{"h": row_hash, "s": score}`` per scorer under ``<output_dir>/score_cache``.

    Lines are appended after every scored chunk, so an interrupted run keeps its work; a torn last line is ignored.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, cache_id: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", cache_id)[-60:].strip("_")
        return self.root / f"{slug}-{hashlib.sha1(cache_id.encode()).hexdigest()[:10]}.jsonl"

    def load(self, cache_id: str) -> dict[str, float]:
        path = self.path(cache_id)
        out: dict[str, float] = {}
        if not path.exists():
            return out
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    item = json.loads(line)
                    out[item["h"]] = math.nan if item["s"] is None else float(item["s"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a crash: that row is simply scored again
        return out

    def add(self, cache_id: str, scores: dict[str, float]) -> None:
        path = self.path(cache_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            for h, s in scores.items():
                fh.write(json.dumps({"h": h, "s": None if not math.isfinite(s) else s}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


    def load_metrics(self, key: str) -> dict | None:
        """Metrics computed earlier from exactly these scores and options (the bootstrap is the slow part)."""
        path = self.root / "metrics" / f"{key}.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def save_metrics(self, key: str, metrics: dict) -> None:
        path = self.root / "metrics" / f"{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, json.dumps(_jsonable(metrics)))


@dataclass
class ScoringStats:
    scored: int = 0
    cached: int = 0
    failed: int = 0
    no_reference: int = 0
    seconds: float = 0.0


def score_rows(
    entry: ScorerEntry,
    instructions: Sequence[str],
    responses: Sequence[str],
    references: Sequence[str | None] | None,
    cache: ScoreCache,
    batch_size: int = 16,
    desc: str = "",
    stats_out: ScoringStats | None = None,
) -> np.ndarray:
    """Scores of every row, from the cache where possible; NaN where the scorer cannot score the row.

    Rows are deduplicated by hash and scored in chunks with a progress bar; each chunk is cached as it finishes.
    A chunk the scorer rejects is retried row by row so one bad row costs one NaN (counted), not the run.
    """
    from tqdm.auto import tqdm

    n = len(responses)
    refs = list(references) if (entry.needs_reference and references is not None) else [None] * n
    hashes = [row_hash(i, r, ref if entry.needs_reference else None)
              for i, r, ref in zip(instructions, responses, refs)]
    cached = cache.load(entry.cache_id)
    st = stats_out if stats_out is not None else ScoringStats()
    todo: dict[str, int] = {}
    for idx, h in enumerate(hashes):
        if h in cached or h in todo:
            continue
        if entry.needs_reference and refs[idx] is None:
            cached[h] = math.nan
            st.no_reference += 1
            continue
        todo[h] = idx
    st.cached += n - len(todo)
    start = time.perf_counter()
    chunk = max(4 * batch_size, 64)
    items = list(todo.items())
    with tqdm(total=len(items), desc=desc or entry.name, unit="row", disable=not items, leave=False,
              file=sys.stderr) as bar:
        for lo in range(0, len(items), chunk):
            part = items[lo : lo + chunk]
            got = _score_chunk(entry, [instructions[i] for _, i in part], [responses[i] for _, i in part],
                               [refs[i] for _, i in part], batch_size, st)
            new = {h: s for (h, _), s in zip(part, got)}
            cache.add(entry.cache_id, new)
            cached.update(new)
            bar.update(len(part))
    st.scored += len(items)
    st.seconds += time.perf_counter() - start
    return np.array([cached[h] for h in hashes], dtype=float)


def _call_scorer(entry: ScorerEntry, ins, resp, refs, batch_size) -> list[float]:
    out = entry.scorer.score(list(ins), list(resp), references=list(refs) if entry.needs_reference else None,
                             batch_size=batch_size)
    out = [float(x) for x in out]
    if len(out) != len(resp):
        raise SelfJInputError(f"scorer {entry.name!r} returned {len(out)} scores for {len(resp)} rows.")
    return out


def _score_chunk(entry, ins, resp, refs, batch_size, st: ScoringStats) -> list[float]:
    try:
        return _call_scorer(entry, ins, resp, refs, batch_size)
    except SelfJInputError:
        if len(resp) == 1:
            raise
    out = []
    for i, r, ref in zip(ins, resp, refs):
        try:
            out.extend(_call_scorer(entry, [i], [r], [ref], batch_size))
        except SelfJInputError as err:
            out.append(math.nan)
            st.failed += 1
            last = err
    if all(not math.isfinite(x) for x in out):
        raise last  # every row failed: a problem with the scorer, not with a row
    return out


# ---------------------------------------------------------------------------------------------------------------
# Metrics (each small, pure and tested against hand-computed examples)
# ---------------------------------------------------------------------------------------------------------------
def _finite(*arrays: np.ndarray) -> np.ndarray:
    mask = np.ones(len(arrays[0]), dtype=bool)
    for a in arrays:
        mask &= np.isfinite(np.asarray(a, dtype=float))
    return mask


def _quiet(fn: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant inputs: scipy warns and returns NaN, which is what we report
        with np.errstate(all="ignore"):
            return fn()


def correlations(scores: Sequence[float], quality: Sequence[float], kendall: bool = True) -> dict[str, float]:
    """Pearson, Spearman and Kendall's tau-b of score vs quality over rows where both are finite."""
    s, q = np.asarray(scores, float), np.asarray(quality, float)
    m = _finite(s, q)
    s, q = s[m], q[m]
    out = {"n": int(m.sum())}
    if len(s) < 3:
        return out | {"pearson": math.nan, "spearman": math.nan, "kendall": math.nan}
    out["pearson"] = float(_quiet(lambda: stats.pearsonr(s, q).statistic))
    out["spearman"] = float(_quiet(lambda: stats.spearmanr(s, q).statistic))
    if kendall:
        out["kendall"] = float(_quiet(lambda: stats.kendalltau(s, q).statistic))
    return out


def preference_accuracy(score_first: Sequence[float], score_second: Sequence[float],
                        first_wins: Sequence[bool]) -> dict[str, float]:
    """Share of pairs where ``score_first > score_second`` matches the label; exact score ties count one half.

    Half credit for ties is what a coin flip would earn, so a constant scorer lands at 0.5, not 0 or 1.
    """
    a, b = np.asarray(score_first, float), np.asarray(score_second, float)
    y = np.asarray(first_wins, bool)
    m = _finite(a, b)
    a, b, y = a[m], b[m], y[m]
    if len(a) == 0:
        return {"accuracy": math.nan, "n": 0, "ties": 0}
    credit = np.where(a == b, 0.5, ((a > b) == y).astype(float))
    return {"accuracy": float(np.mean(credit)), "n": int(len(a)), "ties": int(np.sum(a == b))}


def agreement_with_reference(response_scores, reference_scores, quality, threshold: float = 0.5) -> dict[str, float]:
    """Does J(x, y) > J(x, reference) match GPT-4's verdict (win probability > 0.5)? Exact 0.5 verdicts are left out.

    Also the Pearson correlation of the margin J(x, y) - J(x, reference) with the win probability.
    """
    s, r, q = (np.asarray(v, float) for v in (response_scores, reference_scores, quality))
    decided = q != threshold
    out = preference_accuracy(s[decided], r[decided], q[decided] > threshold)
    margin = correlations(s - r, q, kendall=False)
    out["margin_pearson"] = margin["pearson"]
    out["margin_spearman"] = margin["spearman"]
    out["gpt4_ties_excluded"] = int((~decided).sum())
    # The majority answer for scale: strong references beat most responses, so "the reference always wins" is
    # already right most of the time.
    out["always_reference_accuracy"] = float(np.mean(q[decided] < threshold)) if decided.any() else math.nan
    return out


def per_model_means(scores: Sequence[float], models: Sequence[str]) -> dict[str, float]:
    """Mean finite score per model."""
    s = np.asarray(scores, float)
    names = sorted(set(models))
    out = {}
    for name in names:
        vals = s[[m == name for m in models]]
        vals = vals[np.isfinite(vals)]
        out[name] = float(vals.mean()) if len(vals) else math.nan
    return out


def ranking_agreement(model_scores: dict[str, float], target: dict[str, float],
                      exclude: Sequence[str] = ()) -> dict[str, Any]:
    """Spearman and Kendall between per-model scores and a target (e.g. the leaderboard), on models in both."""
    names = [m for m in model_scores if m in target and m not in exclude
             and math.isfinite(model_scores[m]) and math.isfinite(target[m])]
    x = np.array([model_scores[m] for m in names])
    y = np.array([target[m] for m in names])
    if len(names) < 3:
        return {"spearman": math.nan, "kendall": math.nan, "n_models": len(names)}
    return {
        "spearman": float(_quiet(lambda: stats.spearmanr(x, y).statistic)),
        "kendall": float(_quiet(lambda: stats.kendalltau(x, y).statistic)),
        "n_models": len(names),
    }


def gaming_check(model_scores: dict[str, float], adversarial: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Where each adversarial entry ranks (1 = best) and whether it beats the median honest model.

    A judge whose mean score for a constant or annotator-gaming answer beats the median honest model is being
    gamed: a policy trained against it would learn to produce that answer.
    """
    honest = {m: s for m, s in model_scores.items() if m not in adversarial and math.isfinite(s)}
    median_honest = float(np.median(list(honest.values()))) if honest else math.nan
    ordered = sorted((m for m in model_scores if math.isfinite(model_scores[m])),
                     key=lambda m: -model_scores[m])
    out = {}
    for adv in adversarial:
        if adv not in model_scores or not math.isfinite(model_scores[adv]):
            continue
        score = model_scores[adv]
        out[adv] = {
            "rank": ordered.index(adv) + 1,
            "of": len(ordered),
            "beats_honest": int(sum(score > s for s in honest.values())),
            "n_honest": len(honest),
            "score": score,
            "median_honest_score": median_honest,
            "gamed": bool(score > median_honest),
        }
    return out


def selective_curve(scores: Sequence[float], quality: Sequence[float], coverages: Sequence[float] = COVERAGES,
                    tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Mean quality of the top ``c`` fraction of rows by score, for each coverage ``c`` (rows with NaN dropped).

    Score ties are broken by ``tiebreak`` (a fixed random key) so a constant scorer behaves like a random order.
    """
    s, q = np.asarray(scores, float), np.asarray(quality, float)
    m = _finite(s, q)
    if tiebreak is None:
        tiebreak = np.random.default_rng(0).random(len(s))
    s, q, t = s[m], q[m], np.asarray(tiebreak)[m]
    if len(s) == 0:
        return np.full(len(coverages), math.nan)
    order = np.lexsort((t, -s))
    kept_mean = np.cumsum(q[order]) / np.arange(1, len(q) + 1)
    k = np.array([max(1, math.ceil(round(c * len(q), 9))) for c in coverages])
    return kept_mean[k - 1]


def curve_summary(curve: Sequence[float], coverages: Sequence[float] = COVERAGES) -> dict[str, float]:
    """Area under the coverage-quality curve (normalised by the coverage span: a mean kept quality), and the
    quality at 50% and 80% coverage."""
    c, y = np.asarray(coverages, float), np.asarray(curve, float)
    span = c[-1] - c[0]
    out = {"auc": float(trapezoid(y, c) / span) if span > 0 else float(y[0])}
    for target in (0.5, 0.8):
        hit = np.isclose(c, target)
        out[f"quality_at_{int(target * 100)}"] = float(y[hit][0]) if hit.any() else float(np.interp(target, c, y))
    return out


def within_group_correlations(scores, quality, groups: Sequence[str]) -> dict[str, Any]:
    """Mean Pearson and Spearman inside each group (question), over groups where both vary.

    Pooled correlation rewards a judge for telling easy questions from hard ones; within-question correlation
    asks the harder thing: given one question, does it order the answers as the grader does?
    """
    s, q = np.asarray(scores, float), np.asarray(quality, float)
    per = _per_group_correlations(s, q, groups)
    pear = np.array([v[0] for v in per.values()])
    spear = np.array([v[1] for v in per.values()])
    ok = np.isfinite(pear)
    return {
        "pearson": float(pear[ok].mean()) if ok.any() else math.nan,
        "spearman": float(np.nanmean(spear[ok])) if ok.any() else math.nan,
        "n_groups": int(ok.sum()),
        "n_groups_skipped": int((~ok).sum()),
    }


def _per_group_correlations(s: np.ndarray, q: np.ndarray, groups: Sequence[str]) -> dict[str, tuple[float, float]]:
    index: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        index.setdefault(g, []).append(i)
    out = {}
    for g, rows in index.items():
        rows = np.array(rows)
        m = _finite(s[rows], q[rows])
        gs, gq = s[rows][m], q[rows][m]
        if len(gs) < 3 or np.ptp(gs) == 0 or np.ptp(gq) == 0:
            out[g] = (math.nan, math.nan)
            continue
        out[g] = (float(_quiet(lambda: stats.pearsonr(gs, gq).statistic)),
                  float(_quiet(lambda: stats.spearmanr(gs, gq).statistic)))
    return out


def bootstrap_ci(statistic: Callable[[np.ndarray], np.ndarray], n_groups: int, n_resamples: int = 1000,
                 confidence_level: float = 0.95, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile confidence intervals of a vector statistic by resampling *groups* (instructions) with scipy.

    Answers to one instruction share its difficulty, so rows are not independent; resampling whole instructions
    (a cluster bootstrap) gives honest intervals. ``statistic`` maps an array of group indices to a vector.
    """
    if n_groups < 2 or n_resamples <= 0:
        nan = np.full(len(np.atleast_1d(statistic(np.arange(n_groups)))), math.nan)
        return nan, nan
    res = _quiet(lambda: stats.bootstrap(
        (np.arange(n_groups),), lambda idx: np.atleast_1d(statistic(np.asarray(idx, dtype=int))),
        vectorized=False, n_resamples=n_resamples, confidence_level=confidence_level, method="percentile",
        rng=np.random.default_rng(seed),
    ))
    return np.atleast_1d(res.confidence_interval.low), np.atleast_1d(res.confidence_interval.high)


# ---------------------------------------------------------------------------------------------------------------
# Per-set evaluation
# ---------------------------------------------------------------------------------------------------------------
def _group_index(groups: Sequence[str]) -> tuple[list[str], list[np.ndarray]]:
    index: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        index.setdefault(g, []).append(i)
    names = list(index)
    return names, [np.array(index[g]) for g in names]


def _with_ci(keys: list[str], low: np.ndarray, high: np.ndarray) -> dict[str, Any]:
    return {k: [float(lo), float(hi)] for k, lo, hi in zip(keys, low, high)}


def quality_rows(ds: PointwiseSet) -> np.ndarray:
    """Rows whose external quality label can be trusted: all, except the adversarial entries' answers.

    ``NullModel`` and ``gpt4_gamed`` were built to fool the GPT-4 annotator, so their GPT-4 labels are the gamed
    ones (NullModel's constant junk wins 77% of the time). Correlating a judge with those labels would reward it
    for being fooled the same way; the gaming check reports those entries instead.
    """
    if not ds.adversarial:
        return np.ones(len(ds), dtype=bool)
    return np.array([m not in ds.adversarial for m in ds.models], dtype=bool)


def _quality_metrics(ds: PointwiseSet, scores: np.ndarray, ref_per_row: np.ndarray | None, rows: np.ndarray,
                     tiebreak: np.ndarray) -> dict[str, Any]:
    """Correlation, within-question correlation, selective curve and agreement with GPT-4 on ``rows``."""
    q, s = ds.quality[rows], scores[rows]
    valid = _finite(s, q)
    out: dict[str, Any] = {"n_rows": int(rows.sum()), "n_scored": int(valid.sum()),
                           "n_unscored": int((~valid).sum())}
    out["correlation"] = correlations(s, q)
    out["within_question"] = within_group_correlations(s, q, [g for g, k in zip(ds.groups, rows) if k])
    curve = selective_curve(s, q, COVERAGES, tiebreak[rows])
    out["selective"] = {"coverages": list(COVERAGES), "curve": curve.tolist(), **curve_summary(curve)}
    # Oracle and random on the same rows the scorer scored (a reference-reading baseline may skip some).
    best = (curve_summary(selective_curve(q[valid], q[valid], COVERAGES, tiebreak[rows][valid]))["auc"]
            if valid.any() else math.nan)
    base = float(np.mean(q[valid])) if valid.any() else math.nan
    out["selective"].update({"oracle_auc": best, "random_auc": base})
    out["selective"]["share_of_oracle_gain"] = (
        (out["selective"]["auc"] - base) / (best - base) if valid.any() and best > base else math.nan)
    if ref_per_row is not None:
        out["vs_reference"] = agreement_with_reference(s, ref_per_row[rows], q)
    return out


def evaluate_pointwise(
    ds: PointwiseSet,
    scores: np.ndarray,
    reference_scores: dict[str, float] | None,
    *,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Every pointwise metric of one scorer on one set, with cluster-bootstrap intervals for the headline ones.

    Quality metrics (correlation, selective following, agreement with GPT-4) use :func:`quality_rows`; on
    AlpacaEval the same figures over all rows, adversarial entries included, are kept under ``all_rows``.
    Model ranking and the gaming check always use every model.
    """
    scores = np.asarray(scores, dtype=float)
    q = ds.quality
    tiebreak = np.random.default_rng(seed).random(len(q))
    ref_per_row = None
    if reference_scores is not None and ds.group_references is not None:
        ref_per_row = np.array([reference_scores.get(g, math.nan) for g in ds.groups], dtype=float)
    trusted = quality_rows(ds)
    out = _quality_metrics(ds, scores, ref_per_row, trusted, tiebreak)
    out["rows"] = "honest models only (adversarial entries left out)" if not trusted.all() else "all"
    if not trusted.all():
        every = _quality_metrics(ds, scores, ref_per_row, np.ones(len(q), dtype=bool), tiebreak)
        out["all_rows"] = {k: every[k] for k in ("n_scored", "correlation", "selective", "vs_reference")
                           if k in every}
    has_models = all(m is not None for m in ds.models)
    if has_models:
        means = per_model_means(scores, ds.models)
        target = ds.leaderboard or per_model_means(q, ds.models)
        rank: dict[str, Any] = {"target": "leaderboard win rate" if ds.leaderboard else f"mean {ds.quality_name}",
                                "per_model_mean": means}
        rank["all"] = ranking_agreement(means, target)
        if ds.adversarial:
            rank["honest"] = ranking_agreement(means, target, exclude=ds.adversarial)
            rank["gaming"] = gaming_check(means, ds.adversarial)
        if ref_per_row is not None:
            wins = np.where(scores == ref_per_row, 0.5, (scores > ref_per_row).astype(float))
            wins[~_finite(scores, ref_per_row)] = math.nan
            win_rates = per_model_means(wins, ds.models)
            rank["win_rate_vs_reference"] = win_rates
            rank["win_rate_vs_reference_honest"] = ranking_agreement(win_rates, target, exclude=ds.adversarial)
        out["ranking"] = rank
    out["ci"] = _pointwise_ci(ds, scores, ref_per_row, trusted, tiebreak, n_resamples, confidence_level, seed,
                              has_models)
    return out


def _pointwise_ci(ds, scores, ref_per_row, trusted, tiebreak, n_resamples, confidence_level, seed, has_models):
    """Intervals for Pearson, Spearman, selective AUC, agreement with GPT-4 and the honest model ranking."""
    q = ds.quality
    _, group_rows = _group_index(ds.groups)
    keys = ["pearson", "spearman", "auc"]
    if ref_per_row is not None:
        keys.append("vs_reference_accuracy")
    use_rank = has_models and ds.leaderboard is not None
    if use_rank:
        keys.append("ranking_spearman_honest")
        names = sorted(set(ds.models))
        code = np.array([names.index(m) for m in ds.models])
        honest = np.array([n not in ds.adversarial and n in ds.leaderboard for n in names])
        board = np.array([ds.leaderboard.get(n, math.nan) for n in names])
    finite = _finite(scores, q)

    def statistic(group_idx: np.ndarray) -> np.ndarray:
        rows = np.concatenate([group_rows[g] for g in group_idx])
        rows = rows[finite[rows]]
        keep = rows[trusted[rows]]
        s, y = scores[keep], q[keep]
        if len(s) < 3:
            return np.full(len(keys), math.nan)
        vals = [stats.pearsonr(s, y).statistic, stats.spearmanr(s, y).statistic,
                curve_summary(selective_curve(s, y, COVERAGES, tiebreak[keep]))["auc"]]
        if ref_per_row is not None:
            decided = y != 0.5
            vals.append(preference_accuracy(s[decided], ref_per_row[keep][decided], y[decided] > 0.5)["accuracy"])
        if use_rank:
            sums = np.bincount(code[rows], weights=scores[rows], minlength=len(names))
            counts = np.bincount(code[rows], minlength=len(names))
            means = sums / np.maximum(counts, 1)
            vals.append(stats.spearmanr(means[honest], board[honest]).statistic)
        return np.array(vals, dtype=float)

    if (finite & trusted).sum() < 3:
        return {}
    low, high = bootstrap_ci(statistic, len(group_rows), n_resamples, confidence_level, seed)
    return _with_ci(keys, low, high)


def evaluate_pairwise(ds: PairwiseSet, score_a: np.ndarray, score_b: np.ndarray, *, n_resamples: int = 1000,
                      confidence_level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Accuracy of J(a) > J(b) against the human label on non-tie pairs, per subset and overall, with intervals."""
    labels = np.array(ds.labels)
    subsets = np.array(ds.subsets)
    decided = labels != "tie"
    a_wins = labels == "A"
    out: dict[str, Any] = {"n_pairs": len(labels), "n_ties_excluded": int((~decided).sum()),
                           "n_unscored": int((~_finite(score_a, score_b) & decided).sum())}

    def acc(mask: np.ndarray) -> dict[str, float]:
        return preference_accuracy(score_a[mask], score_b[mask], a_wins[mask])

    per = {name: acc(decided & (subsets == name)) for name in sorted(set(ds.subsets))}
    adv = decided & np.isin(subsets, LLMBAR_ADVERSARIAL)
    if adv.any():
        per["llmbar_adversarial (all 4)"] = acc(adv)
    per["all"] = acc(decided)
    out["accuracy"] = per
    idx = np.flatnonzero(decided & _finite(score_a, score_b))
    if len(idx) >= 2:
        def statistic(sample: np.ndarray) -> np.ndarray:
            rows = idx[sample]
            return np.array([preference_accuracy(score_a[rows], score_b[rows], a_wins[rows])["accuracy"]])

        low, high = bootstrap_ci(statistic, len(idx), n_resamples, confidence_level, seed)
        out["ci"] = {"accuracy_all": [float(low[0]), float(high[0])]}
    return out


# ---------------------------------------------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class EvaluationConfig:
    """Options of ``selfj-trl evaluate`` (flags or ``--config evaluate.yaml``)."""

    output_dir: str = field(metadata={"help": "Folder for metrics.json, report.md, plots and the score cache."})
    judges: list[str] = field(default_factory=list, metadata={
        "help": "Judge folders or Hub ids (a judge trained with distill_weight=0 is just another path)."})
    baselines: list[str] = field(default_factory=lambda: ["length", "random"], metadata={
        "help": f"Baselines by name: {BASELINE_HELP}."})
    eval_sets: list[str] = field(default_factory=lambda: ["alpaca_eval"], metadata={
        "help": "alpaca_eval, mtbench, prometheus, human_pairwise, or a dataset path / Hub id with instruction, "
                "response and a quality column."})
    split: str = field(default="test", metadata={
        "help": "AlpacaEval split: 'test' is held out; 'train' only for in-domain checks (labelled as such)."})
    max_instructions: int | None = field(default=None, metadata={
        "help": "Quick run: this many instructions (questions, pairs) per set, drawn with --seed."})
    seed: int = field(default=0, metadata={"help": "Seed for slicing, the random baseline, ties and the bootstrap."})
    batch_size: int = field(default=16, metadata={"help": "Batch size passed to each scorer."})
    quality_column: str | None = field(default=None, metadata={"help": "Quality column of a custom eval set."})
    data_dir: str | None = field(default=None, metadata={"help": "The shared data folder (default ../shared/data)."})
    embedder: str = field(default=DEFAULT_EMBEDDER, metadata={"help": "Sentence-transformers model of `cosine`."})
    bootstrap_resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples (0 turns intervals off)."})
    confidence_level: float = field(default=0.95, metadata={"help": "Confidence level of the intervals."})


def evaluate_judges(
    judges: Sequence[Any],
    eval_sets: Sequence[Any],
    output_dir: str | Path,
    *,
    baselines: Sequence[str] = (),
    split: str = "test",
    max_instructions: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    quality_column: str | None = None,
    data_dir: str | Path | None = None,
    embedder: str = DEFAULT_EMBEDDER,
    bootstrap_resamples: int = 1000,
    confidence_level: float = 0.95,
    plots: bool = True,
) -> dict[str, Any]:
    """Score every set with every judge and baseline, write ``metrics.json``, ``report.md`` and plots; return metrics.

    ``judges`` may mix judge folders / Hub ids, baseline names and objects with ``.score``; ``baselines`` is a
    convenience for the names. Scores are cached under ``output_dir/score_cache``.
    """
    started = time.perf_counter()
    specs = list(judges) + [b for b in baselines if b not in judges]
    if not specs:
        raise SelfJInputError("nothing to evaluate: pass --judges PATH and/or --baselines NAME.")
    if not eval_sets:
        raise SelfJInputError("no eval set given: pass --eval_sets alpaca_eval (or another set).")
    if batch_size <= 0:
        raise SelfJInputError(f"batch_size must be positive, got {batch_size}.")
    if not 0 < confidence_level < 1:
        raise SelfJInputError(f"confidence_level must be in (0, 1), got {confidence_level}.")
    entries = resolve_scorers(specs, embedder=embedder, seed=seed)
    sets = [load_eval_set(s, data_dir=data_dir, split=split, max_instructions=max_instructions, seed=seed,
                          quality_column=quality_column) for s in eval_sets]
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise SelfJInputError(f"an eval set is listed twice: {names}.")
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = ScoreCache(out_dir / SCORE_CACHE_DIR)
    boot = {"n_resamples": bootstrap_resamples, "confidence_level": confidence_level, "seed": seed}

    metrics: dict[str, Any] = {
        "config": {"split": split, "max_instructions": max_instructions, "seed": seed, "batch_size": batch_size,
                   "bootstrap_resamples": bootstrap_resamples, "confidence_level": confidence_level,
                   "embedder": embedder, "coverages": list(COVERAGES)},
        "scorers": {e.name: {"kind": e.kind, "cache_id": e.cache_id, "needs_reference": e.needs_reference}
                    for e in entries},
        "eval_sets": {},
    }
    for ds in sets:
        metrics["eval_sets"][ds.name] = _evaluate_set(ds, entries, cache, batch_size, boot)
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    plot_files = write_plots(metrics, sets, out_dir) if plots else {}
    metrics["plots"] = plot_files
    _atomic_write(out_dir / "metrics.json", json.dumps(_jsonable(metrics), indent=2, allow_nan=False) + "\n")
    _atomic_write(out_dir / "report.md", render_report(metrics))
    return metrics


def _evaluate_set(ds, entries: list[ScorerEntry], cache: ScoreCache, batch_size: int, boot: dict) -> dict:
    result: dict[str, Any] = {"title": ds.title, "kind": ds.kind, "n": len(ds), "notes": list(ds.notes),
                              "scorers": {}}
    if isinstance(ds, PointwiseSet):
        result["quality"] = ds.quality_name
        result["split"] = ds.split
        tiebreak = np.random.default_rng(boot["seed"]).random(len(ds))
        trusted = quality_rows(ds)
        q = ds.quality[trusted]
        oracle = selective_curve(q, q, COVERAGES, tiebreak[trusted])
        result["quality_rows"] = int(trusted.sum())
        result["orderings"] = {
            "oracle": {"curve": oracle.tolist(), **curve_summary(oracle)},
            "random (expected)": {"curve": [float(q.mean())] * len(COVERAGES),
                                  **curve_summary(np.full(len(COVERAGES), q.mean()))},
        }
        if not trusted.all():
            result["notes"].append(
                f"quality metrics use the {int(trusted.sum())} answers of honest models: the adversarial entries' "
                "GPT-4 labels are the gamed ones (see the gaming check); all-row figures follow the table.")
        if all(m is not None for m in ds.models):
            gpt4_means = per_model_means(ds.quality, ds.models)
            result["gpt4_per_model_mean"] = gpt4_means
            if ds.leaderboard:
                result["gpt4_rows_vs_leaderboard"] = {
                    "all": ranking_agreement(gpt4_means, ds.leaderboard),
                    "honest": ranking_agreement(gpt4_means, ds.leaderboard, exclude=ds.adversarial),
                    "leaderboard_gaming": gaming_check(ds.leaderboard, ds.adversarial),
                }
    for e in entries:
        st = ScoringStats()
        result["scorers"][e.name] = _evaluate_scorer(ds, e, cache, batch_size, boot, st)
    if isinstance(ds, PairwiseSet):
        length = LengthScorer("chars")
        la = np.array(length.score(ds.instructions, ds.responses_a))
        lb = np.array(length.score(ds.instructions, ds.responses_b))
        result["longer_answer_wins"] = evaluate_pairwise(ds, la, lb, n_resamples=0)["accuracy"]
    return result


def _metrics_key(ds, e: ScorerEntry, boot: dict, *arrays: Any) -> str:
    """Identity of one scorer's metrics on one set: the set, the scores and every option the metrics read."""
    truth = ds.quality.tolist() if isinstance(ds, PointwiseSet) else ds.labels
    h = hashlib.sha1(json.dumps([METRICS_VERSION, ds.name, len(ds), e.needs_reference, boot, list(COVERAGES),
                                 truth, ds.groups if isinstance(ds, PointwiseSet) else ds.subsets,
                                 getattr(ds, "models", None), getattr(ds, "leaderboard", None)],
                                sort_keys=True).encode())
    for a in arrays:
        h.update(json.dumps(a, sort_keys=True).encode() if isinstance(a, dict) else np.asarray(a, float).tobytes())
    return h.hexdigest()[:20]


def _evaluate_scorer(ds, e: ScorerEntry, cache: ScoreCache, batch_size: int, boot: dict, st: ScoringStats) -> dict:
    """Score one set with one scorer and compute its metrics (reused from the cache when scores are unchanged)."""
    if isinstance(ds, PointwiseSet):
        scores = score_rows(e, ds.instructions, ds.responses, ds.references, cache, batch_size,
                            f"{e.name} on {ds.name}", st)
        ref_scores = None
        if ds.group_references is not None and not e.needs_reference:
            gids = list(ds.group_references)
            ref_text = [ds.group_references[g] for g in gids]
            instr = dict(zip(ds.groups, ds.instructions))
            vals = score_rows(e, [instr[g] for g in gids], ref_text, None, cache, batch_size,
                              f"{e.name} on {ds.name} references", st)
            ref_scores = dict(zip(gids, vals.tolist()))
        key = _metrics_key(ds, e, boot, scores, ref_scores or {})
        res = cache.load_metrics(key)
        if res is None:
            res = evaluate_pointwise(ds, scores, ref_scores, n_resamples=boot["n_resamples"],
                                     confidence_level=boot["confidence_level"], seed=boot["seed"])
            if e.needs_reference and ds.group_references is not None:
                res["vs_reference"] = None  # cos(reference, reference) = 1: the comparison says nothing
            cache.save_metrics(key, res)
    else:
        sa = score_rows(e, ds.instructions, ds.responses_a, ds.references, cache, batch_size,
                        f"{e.name} on {ds.name} (a)", st)
        sb = score_rows(e, ds.instructions, ds.responses_b, ds.references, cache, batch_size,
                        f"{e.name} on {ds.name} (b)", st)
        key = _metrics_key(ds, e, boot, sa, sb)
        res = cache.load_metrics(key)
        if res is None:
            res = evaluate_pairwise(ds, sa, sb, n_resamples=boot["n_resamples"],
                                    confidence_level=boot["confidence_level"], seed=boot["seed"])
            cache.save_metrics(key, res)
    res["scoring"] = asdict(st)
    res["scoring"]["seconds"] = round(st.seconds, 2)
    if e.needs_reference and st.no_reference:
        res["note"] = (f"{e.name} needs the reference: {st.no_reference} rows without one are left out "
                       "of its metrics.")
    return res


# ---------------------------------------------------------------------------------------------------------------
# Output: JSON, Markdown, plots
# ---------------------------------------------------------------------------------------------------------------
def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _fci(point: Any, ci: list[float] | None, digits: int = 3) -> str:
    if ci is None or point is None or not all(isinstance(v, float) and math.isfinite(v) for v in ci):
        return _f(point, digits)
    return f"{_f(point, digits)} [{_f(ci[0], digits)}, {_f(ci[1], digits)}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def render_report(metrics: dict[str, Any]) -> str:
    """The Markdown report: one table per set with judges and baselines side by side, then the gaming table."""
    cfg = metrics["config"]
    level = int(round(cfg["confidence_level"] * 100))
    lines = ["# Judge evaluation report", ""]
    scorers = ", ".join(f"`{n}` ({v['kind']})" for n, v in metrics["scorers"].items())
    lines.append(
        f"Scorers: {scorers}. "
        f"Brackets are {level}% percentile intervals from {cfg['bootstrap_resamples']} bootstrap resamples of whole "
        f"instructions (seed {cfg['seed']}). Total time {metrics.get('seconds', 0):.0f} s."
    )
    lines.append("")
    for name, res in metrics["eval_sets"].items():
        lines += [f"## {res['title']} (`{name}`, {res['n']} rows)", ""]
        lines += [f"- {note}" for note in res["notes"]]
        lines += _pointwise_section(name, res) if res["kind"] == "pointwise" else _pairwise_section(res)
        notes = [r["note"] for r in res["scorers"].values() if r.get("note")]
        lines += [f"- {n}" for n in notes]
        lines.append("")
    gaming = _gaming_section(metrics)
    if gaming:
        lines += gaming
    for title, file in metrics.get("plots", {}).items():
        lines += [f"![{title}]({file})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _pointwise_section(name: str, res: dict) -> list[str]:
    has_ref = any(isinstance(r.get("vs_reference"), dict) for r in res["scorers"].values())
    has_rank = any("ranking" in r for r in res["scorers"].values())
    board = "gpt4_rows_vs_leaderboard" in res
    header = ["scorer", "n", "Pearson", "Spearman", "Kendall", "within-question Pearson", "selective AUC",
              "quality@50%", "quality@80%", "share of oracle gain"]
    if has_ref:
        header.append("agrees with GPT-4 vs reference")
    if has_rank:
        header.append("model-ranking Spearman (honest)" if board else "model-ranking Spearman")
    rows = []
    for scorer, r in res["scorers"].items():
        ci = r.get("ci", {})
        c, sel = r["correlation"], r["selective"]
        row = [f"`{scorer}`", str(r["n_scored"]), _fci(c["pearson"], ci.get("pearson")),
               _fci(c["spearman"], ci.get("spearman")), _f(c.get("kendall")),
               _f(r["within_question"]["pearson"]), _fci(sel["auc"], ci.get("auc")),
               _f(sel["quality_at_50"]), _f(sel["quality_at_80"]), _f(sel["share_of_oracle_gain"])]
        if has_ref:
            vs = r.get("vs_reference")
            row.append(_fci(vs["accuracy"], ci.get("vs_reference_accuracy")) if vs else "n/a (reads the reference)")
        if has_rank:
            rk = r.get("ranking", {})
            key = "honest" if board else "all"
            row.append(_fci(rk.get(key, {}).get("spearman"), ci.get("ranking_spearman_honest")))
        rows.append(row)
    for label, o in res.get("orderings", {}).items():
        rows.append([f"*{label}*", str(res.get("quality_rows", res["n"])), "", "", "", "", _f(o["auc"]),
                     _f(o["quality_at_50"]),
                     _f(o["quality_at_80"]), "1.000" if label == "oracle" else "0.000"]
                    + [""] * (int(has_ref) + int(has_rank)))
    out = ["", f"Quality = `{res['quality']}`. Selective columns: mean quality of the answers kept when only the "
           "top-scored fraction is answered (AUC = mean over 10-100% coverage).", ""]
    out += _table(header, rows)
    every = [(n, r["all_rows"]) for n, r in res["scorers"].items() if "all_rows" in r]
    if every:
        out += ["", "The same over all rows, adversarial entries included (their GPT-4 labels are gamed, so a judge "
                "that is not fooled loses points here):", ""]
        out += _table(["scorer", "n", "Pearson", "Spearman", "selective AUC", "agrees with GPT-4 vs reference"],
                      [[f"`{n}`", str(a["n_scored"]), _f(a["correlation"]["pearson"]),
                        _f(a["correlation"]["spearman"]), _f(a["selective"]["auc"]),
                        _f(a["vs_reference"]["accuracy"]) if a.get("vs_reference") else "n/a"] for n, a in every])
    always = [r["vs_reference"]["always_reference_accuracy"] for r in res["scorers"].values()
              if isinstance(r.get("vs_reference"), dict) and "always_reference_accuracy" in r["vs_reference"]]
    if always:
        out += ["", f"For scale: always preferring the reference answer agrees with GPT-4 on {_f(always[0])} of "
                "these answers (the reference is a strong GPT-4-turbo answer)."]
    if board:
        g = res["gpt4_rows_vs_leaderboard"]
        out += ["", f"For scale: GPT-4's own mean win probability on these rows ranks the honest models with Spearman "
                f"{_f(g['honest']['spearman'])} against the leaderboard (all 805 instructions)."]
    return out


def _pairwise_section(res: dict) -> list[str]:
    subsets = list(res["longer_answer_wins"])
    header = ["scorer"] + subsets
    rows = []
    for scorer, r in res["scorers"].items():
        acc = r["accuracy"]
        row = [f"`{scorer}`"]
        for s in subsets:
            cell = _f(acc[s]["accuracy"])
            if s == "all":
                cell = _fci(acc[s]["accuracy"], r.get("ci", {}).get("accuracy_all"))
            row.append(cell)
        rows.append(row)
    lw = res["longer_answer_wins"]
    rows.append(["*longer answer wins*"] + [_f(lw[s]["accuracy"]) for s in subsets])
    rows.append(["*pairs (non-tie)*"] + [str(lw[s]["n"]) for s in subsets])
    out = ["", "Accuracy of J(a) > J(b) against the human label on non-tie pairs (score ties count one half). "
           "LLMBar Adversarial is built so that the longer or more superficially polished answer is the wrong one.",
           ""]
    return out + _table(header, rows)


def _gaming_section(metrics: dict) -> list[str]:
    rows = []
    for res in metrics["eval_sets"].values():
        board = res.get("gpt4_rows_vs_leaderboard")
        if board is None:
            continue
        def cells(g: dict) -> list[str]:
            out = []
            for adv in ("NullModel", "gpt4_gamed"):
                info = g.get(adv)
                out.append(f"{info['rank']}/{info['of']}" if info else "n/a")
            flagged = [adv for adv, info in g.items() if info["gamed"]]
            out.append("**GAMED by " + ", ".join(flagged) + "**" if flagged else "no")
            return out
        rows.append(["*GPT-4 annotator (leaderboard)*"] + cells(board["leaderboard_gaming"]))
        for scorer, r in res["scorers"].items():
            g = r.get("ranking", {}).get("gaming")
            if g is not None:
                rows.append([f"`{scorer}`"] + cells(g))
    if not rows:
        return []
    return ["## Gaming check (AlpacaEval adversarial entries)", "",
            "`NullModel` answers every instruction with one constant string built to fool the GPT-4 annotator; "
            "`gpt4_gamed` games it too. Rank = place among all models by mean score (1 = best). A scorer is "
            "flagged when an adversarial entry's mean score beats the median honest model. The `random` row, if "
            "present, shows where chance puts them: a scorer that cannot tell junk from answers is gameable.", ""] + _table(
        ["scorer", "NullModel rank", "gpt4_gamed rank", "flagged"], rows) + [""]


def write_plots(metrics: dict, sets: list, out_dir: Path) -> dict[str, str]:
    """Coverage-quality curves per pointwise set, and per-model mean score vs leaderboard win rate (AlpacaEval)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    files: dict[str, str] = {}
    for ds in sets:
        res = metrics["eval_sets"][ds.name]
        if res["kind"] != "pointwise":
            continue
        fig = Figure(figsize=(7, 4.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        cov = [100 * c for c in COVERAGES]
        for scorer, r in res["scorers"].items():
            ax.plot(cov, r["selective"]["curve"], marker="o", ms=3, label=scorer)
        ax.plot(cov, res["orderings"]["oracle"]["curve"], "k--", label="oracle (GPT-4)")
        ax.plot(cov, res["orderings"]["random (expected)"]["curve"], "k:", label="random (expected)")
        ax.set_xlabel("coverage: % of answers kept (highest score first)")
        ax.set_ylabel(f"mean {res['quality']} of kept answers")
        subset = " (honest models' answers)" if res.get("quality_rows", res["n"]) < res["n"] else ""
        ax.set_title(f"Selective instruction following: {ds.name}{subset}")
        ax.invert_xaxis()
        ax.legend(fontsize=7)
        fig.tight_layout()
        files[f"coverage-quality curves, {ds.name}"] = _save(fig, out_dir / f"coverage_{_slug(ds.name)}.png")
        if isinstance(ds, PointwiseSet) and ds.leaderboard:
            files[f"per-model mean score vs leaderboard, {ds.name}"] = _ranking_plot(res, ds, out_dir)
    return files


def _ranking_plot(res: dict, ds: PointwiseSet, out_dir: Path) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    scorers = [(n, r) for n, r in res["scorers"].items() if "ranking" in r]
    panels = [("GPT-4 on these rows", res["gpt4_per_model_mean"], res["gpt4_rows_vs_leaderboard"]["honest"])]
    panels += [(n, r["ranking"]["per_model_mean"], r["ranking"].get("honest", r["ranking"]["all"])) for n, r in scorers]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.6 * nrows))
    FigureCanvasAgg(fig)
    for k, (title, means, agree) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        for model, y in means.items():
            x = ds.leaderboard.get(model)
            if x is None or y is None or not math.isfinite(y):
                continue
            adv = model in ds.adversarial
            ax.scatter([x], [y], c="tab:red" if adv else "tab:blue", marker="x" if adv else "o", s=28)
            if adv:
                ax.annotate(model, (x, y), fontsize=7, color="tab:red", xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("AlpacaEval 2.0 win rate (%)")
        ax.set_ylabel("mean score")
        ax.set_title(f"{title}\nSpearman (honest) = {_f(agree.get('spearman'), 2)}", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_dir / f"ranking_{_slug(ds.name)}.png")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _save(fig, path: Path) -> str:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path.name


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``selfj-trl evaluate --judges PATH ... --baselines length random cosine --eval_sets alpaca_eval ...``"""
    from trl import TrlParser

    parser = TrlParser((EvaluationConfig,), prog="selfj-trl evaluate")
    (cfg,) = parser.parse_args_and_config(argv)
    metrics = evaluate_judges(
        cfg.judges, cfg.eval_sets, cfg.output_dir, baselines=cfg.baselines, split=cfg.split,
        max_instructions=cfg.max_instructions, seed=cfg.seed, batch_size=cfg.batch_size,
        quality_column=cfg.quality_column, data_dir=cfg.data_dir, embedder=cfg.embedder,
        bootstrap_resamples=cfg.bootstrap_resamples, confidence_level=cfg.confidence_level,
    )
    print(_summary(metrics))
    print(f"wrote {Path(cfg.output_dir) / 'metrics.json'} and {Path(cfg.output_dir) / 'report.md'}")
    return 0


def _summary(metrics: dict) -> str:
    lines = []
    for name, res in metrics["eval_sets"].items():
        for scorer, r in res["scorers"].items():
            if res["kind"] == "pointwise":
                lines.append(f"{name:>16} {scorer:>24}: Pearson {_f(r['correlation']['pearson'])}  "
                             f"Spearman {_f(r['correlation']['spearman'])}  AUC {_f(r['selective']['auc'])}")
            else:
                lines.append(f"{name:>16} {scorer:>24}: accuracy {_f(r['accuracy']['all']['accuracy'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
