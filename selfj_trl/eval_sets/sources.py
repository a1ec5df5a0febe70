"""The built-in held-out sets rebuilt from where they were published, for a machine without the project's data folder.

A user's fresh clone has no ``../shared/data``. There, a built-in set is downloaded once from its original
repository (GitHub raw files at a pinned commit; Hub files through ``huggingface_hub``), converted into the files the
set's loader reads (same names, same columns), and cached under the ``datasets`` cache
(``HF_DATASETS_CACHE/selfj_trl_eval_sets``); later runs, offline ones included, read the cache. The GitHub base URL
is ``$SELFJ_GITHUB_RAW`` (default ``https://raw.githubusercontent.com``) and the Hub is ``$HF_ENDPOINT``, so a
mirror or a local stand-in can serve both. With ``HF_HUB_OFFLINE`` set nothing is downloaded.

How close each rebuilt set is to the project's data folder (the folder's files were built from the same
commits, which are abbreviated here as in the data README; the conversion follows the original formats and was checked
on sample rows, not byte for byte against the folder):

* ``alpaca_eval``: the same sources. tatsu-lab/alpaca_eval, the ``weighted_alpaca_eval_gpt4_turbo`` annotations of
  the same 17 models (win probability = ``preference - 1``, instruction id = the first 12 hex digits of its SHA-1,
  split by AlpacaEval subset) and the AlpacaEval 2.0 leaderboard csv.
* ``human_pairwise``: the same sources. LLMBar's Natural, Adversarial and Processed (MT-Bench, FairEval, LLMEval^2)
  files and PandaLM's ``testset-v1.json`` (majority of the three annotators; no majority: the pair is left out).
* ``prometheus``: the same sources. prometheus-eval's ``mt_bench_eval.json`` and ``vicuna_eval.json``, the
  instruction, answer, reference and rubric cut out of its grading prompt, the label the mean of the three GPT-4
  scores.
* ``mtbench``: NOT the same data. The project's file merges GPT-4 grades that nine FastChat forks committed for 22
  models of their own; no single public file holds them. The Hub dataset ``lmsys/mt_bench_human_judgments`` holds
  pairwise verdicts only (human and GPT-4 pair), no single-answer grades. The closest single source is FastChat's own
  published judgment file, ``gpt-4_single.jsonl`` of the ``lmsys/mt-bench`` Space (unpinned: ``main``): the same 80
  questions, ``single-v1`` / ``single-math-v1`` prompts and 1-10 scale, but FastChat's own models (GPT-4, Claude,
  Vicuna, LLaMA, ...).

Every report of a rebuilt set says where it came from, how it differs and which files could not be fetched (a set
is built from what could be had and retried when online).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote
from urllib.request import urlopen

import datasets
from huggingface_hub import constants, hf_hub_download

from ..errors import SelfJInputError
from ..io import MANIFEST_NAME, atomic_write_json, atomic_write_text, check_complete, temporary_sibling, write_manifest


GITHUB_RAW_ENV = "SELFJ_GITHUB_RAW"
GITHUB_RAW = "https://raw.githubusercontent.com"
TIMEOUT_S = 60
FETCH_COMMAND = "python -m selfj_trl.eval_sets"

ALPACA_EVAL = ("tatsu-lab/alpaca_eval", "cd543a149df89434d8a54582c0151c0b945c3d20")
ALPACA_MODELS = (
    "oasst-sft-pythia-12b",
    "falcon-7b-instruct",
    "alpaca-7b",
    "gemma-2b-it",
    "phi-2-sft",
    "vicuna-7b-v1.3",
    "oasst-sft-llama-33b",
    "vicuna-13b",
    "wizardlm-13b",
    "vicuna-13b-v1.5",
    "gemma-7b-it",
    "gpt-3.5-turbo-0301",
    "OpenHermes-2.5-Mistral-7B",
    "claude-2",
    "FuseChat-Llama-3.1-8B-Instruct",
    "NullModel",
    "gpt4_gamed",
)
ALPACA_TRAIN_SUBSETS = ("oasst", "helpful_base")  # the rest (koala, vicuna, selfinstruct) is the held-out test split
ALPACA_LEADERBOARD = "src/alpaca_eval/leaderboards/data_AlpacaEval_2/weighted_alpaca_eval_gpt4_turbo_leaderboard.csv"
FASTCHAT = ("lm-sys/FastChat", "0e6d3e4")
MTBENCH_SPACE = "lmsys/mt-bench"  # a Space, unpinned (main): its data files have not changed since 2023
MTBENCH_JUDGMENTS = "data/mt_bench/model_judgment/gpt-4_single.jsonl"
PROMETHEUS = ("prometheus-eval/prometheus-eval", "dcfb442")
PROMETHEUS_FILES = (
    ("mt_bench", "eval/benchmark/data/mt_bench_eval.json"),
    ("vicuna_bench", "eval/benchmark/data/vicuna_eval.json"),
)
LLMBAR = ("princeton-nlp/LLMBar", "900616b")
LLMBAR_SUBSETS = (  # (subset, file, who labelled it)
    ("llmbar_natural", "Dataset/LLMBar/Natural/dataset.json", "curated (authors) - objective instruction following"),
    ("llmbar_adv_neighbor", "Dataset/LLMBar/Adversarial/Neighbor/dataset.json", "curated (authors)"),
    ("llmbar_adv_gptinst", "Dataset/LLMBar/Adversarial/GPTInst/dataset.json", "curated (authors)"),
    ("llmbar_adv_gptout", "Dataset/LLMBar/Adversarial/GPTOut/dataset.json", "curated (authors)"),
    ("llmbar_adv_manual", "Dataset/LLMBar/Adversarial/Manual/dataset.json", "curated (authors)"),
    (
        "mtbench_human",
        "Dataset/Processed/MT-Bench/dataset.json",
        "MT-Bench expert human votes, majority, ties removed",
    ),
    ("faireval", "Dataset/Processed/FairEval/dataset.json", "human annotators (FairEval)"),
    ("llmeval2", "Dataset/Processed/LLMEval^2/dataset.json", "human annotators (LLMEval^2)"),
)
PANDALM = ("WeOpenML/PandaLM", "3871806")
PANDALM_FILE = "data/testset-v1.json"


class PublicDataUnavailable(SelfJInputError):
    """A built-in set is in no data folder, not cached, and its public files could not be fetched."""


def cache_root() -> Path:
    """Where fetched files and rebuilt sets live: inside the ``datasets`` cache, so one cache setting covers it."""
    return Path(datasets.config.HF_DATASETS_CACHE) / "selfj_trl_eval_sets"


def github_url(repo: str, commit: str, path: str) -> str:
    base = os.environ.get(GITHUB_RAW_ENV) or GITHUB_RAW
    return f"{base.rstrip('/')}/{repo}/{commit}/{quote(path)}"


def _reason(err: BaseException) -> str:
    code = getattr(err, "code", None)
    text = f"HTTP {code}" if isinstance(code, int) else str(getattr(err, "reason", None) or err)
    return " ".join(text.split())[:160]


class Fetcher:
    """The downloads of one set's build. A required part that cannot be had raises; an optional one is recorded in
    :attr:`missing` and the build goes on without it."""

    def __init__(self) -> None:
        self.missing: list[tuple[str, str]] = []  # (what, why)

    def _failed(self, what: str, where: str, reason: str, required: bool) -> None:
        if required:
            raise PublicDataUnavailable(f"{what} ({where}: {reason})")
        self.missing.append((what, reason))

    def missing_text(self) -> str:
        return "; ".join(f"{what} ({why})" for what, why in self.missing[:2])

    def github(self, source: tuple[str, str], path: str, what: str, required: bool = True) -> Path | None:
        """A repository file at a pinned commit, downloaded once into the cache."""
        repo, commit = source
        target = cache_root() / "github" / repo / commit / path
        if target.is_file():
            return target
        if constants.is_offline_mode():
            return self._failed(what, f"{repo}@{commit[:7]}", "offline: HF_HUB_OFFLINE is set, not cached", required)
        url = github_url(repo, commit, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_sibling(target)
        try:
            with urlopen(url, timeout=TIMEOUT_S) as response, open(tmp, "wb") as fh:  # noqa: S310 - https or a set base
                while chunk := response.read(1 << 20):
                    fh.write(chunk)
            os.replace(tmp, target)
        except (OSError, ValueError) as err:
            return self._failed(what, url, _reason(err), required)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def hub(
        self,
        repo_id: str,
        filename: str,
        what: str,
        repo_type: str = "dataset",
        revision: str | None = None,
        required: bool = True,
    ) -> Path | None:
        """A Hub file through ``hf_hub_download`` (its own cache, offline mode and ``HF_ENDPOINT``)."""
        endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
        try:
            return Path(hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision, endpoint=endpoint))
        except (OSError, ValueError) as err:
            return self._failed(what, f"{repo_type} {repo_id}/{filename}", _reason(err), required)


@dataclass(frozen=True)
class PublicSource:
    """How one built-in set is rebuilt from its public files: ``build`` fetches and converts them into
    ``{path inside the set's folder: file text}``, laid out as in the project's data folder."""

    name: str
    origin: str
    build: Callable[[Fetcher], dict[str, str]]
    #: How the rebuilt set differs from the project's data folder; empty when it is the same data.
    differs: str = ""

    def folder(self) -> Path:
        return cache_root() / "sets" / self.name

    def notes(self, missing: list) -> list[str]:
        """What a report of the rebuilt set must say about it: where it came from, how it differs, what is missing."""
        notes = [
            f"read from its public files ({self.origin}), not the project's data folder"
            + (f"; differs: {self.differs}" if self.differs else "; the same data")
        ]
        by_reason: dict[str, list[str]] = {}
        for what, why in missing:
            by_reason.setdefault(why, []).append(what)
        if by_reason:
            notes.append(
                "could not fetch, left out: "
                + "; ".join(f"{', '.join(whats)} ({why})" for why, whats in by_reason.items())
            )
        return notes

    def ensure(self) -> tuple[Path, list[str]]:
        """The set's folder (fetched and converted on first use, a partial build retried when online) and its notes;
        :class:`PublicDataUnavailable` (one line: what is missing and how to get it) when there is nothing."""
        folder = self.folder()
        cached = None
        if not check_complete(folder, "rebuilt set"):
            cached = json.loads((folder / "sources.json").read_text(encoding="utf-8"))["missing"]
            if not cached or constants.is_offline_mode():
                return folder, self.notes(cached)
        fetcher = Fetcher()
        try:
            files = self.build(fetcher)
        except PublicDataUnavailable as err:
            if cached is not None:
                return folder, self.notes(cached)
            raise PublicDataUnavailable(
                f"{self.name}: no data folder (../shared/data, --data_dir or SELFJ_SHARED_DATA) and its public files "
                f"could not be fetched: {err}. Get them once with network access: `{FETCH_COMMAND} {self.name}` "
                f"(cached under {cache_root()})."
            ) from None
        (folder / MANIFEST_NAME).unlink(missing_ok=True)  # incomplete until the marker is written again
        for relative, text in files.items():
            atomic_write_text(folder / relative, text)
        atomic_write_json(folder / "sources.json", {"origin": self.origin, "missing": fetcher.missing})
        write_manifest(folder, [*files, "sources.json"], what=f"{self.name} rebuilt from its public files")
        return folder, self.notes(fetcher.missing)


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _read_json(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))  # PandaLM writes NaN for an empty input: json reads it


# ---------------------------------------------------------------------------------------------------------------
# AlpacaEval
# ---------------------------------------------------------------------------------------------------------------
def alpaca_id(instruction: str) -> str:
    """The instruction id of the project's AlpacaEval files."""
    return hashlib.sha1(instruction.encode("utf-8")).hexdigest()[:12]  # noqa: S324 - an id, not security


def build_alpaca_eval(fetch: Fetcher) -> dict[str, str]:
    board = fetch.github(ALPACA_EVAL, ALPACA_LEADERBOARD, "the AlpacaEval 2.0 leaderboard csv")
    instructions: dict[str, dict] = {}
    responses: list[dict] = []
    for model in ALPACA_MODELS:
        path = fetch.github(
            ALPACA_EVAL,
            f"results/{model}/weighted_alpaca_eval_gpt4_turbo/annotations.json",
            f"AlpacaEval annotations of {model}",
            required=False,
        )
        for row in _read_json(path) if path else []:
            if row.get("preference") is None:
                continue
            key = alpaca_id(row["instruction"])
            instructions.setdefault(
                key,
                {
                    "id": key,
                    "instruction": row["instruction"],
                    "subset": row["dataset"],
                    "reference": row["output_1"],
                    "reference_model": row["generator_1"],
                    "split": "train" if row["dataset"] in ALPACA_TRAIN_SUBSETS else "test",
                },
            )
            responses.append(
                {
                    "id": key,
                    "model": model,
                    "response": row["output_2"],
                    "gpt4_win_prob": float(row["preference"]) - 1.0,
                }
            )  # preference is 1 + P(output_2 wins)
    if not responses:
        raise PublicDataUnavailable("no model's AlpacaEval annotations: " + fetch.missing_text())
    fetched = {r["model"] for r in responses}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["model", "win_rate", "length_controlled_win_rate", "avg_length", "mode"])
    for row in csv.DictReader(board.read_text(encoding="utf-8").splitlines()):
        name = row.get("") or row.get("name") or row.get("model")
        if name in fetched:
            writer.writerow([name, row["win_rate"], row["length_controlled_winrate"], row["avg_length"], row["mode"]])
    return {
        "alpaca_eval_gpt4/instructions.jsonl": _jsonl(list(instructions.values())),
        "alpaca_eval_gpt4/responses.jsonl": _jsonl(responses),
        "alpaca_eval_gpt4/leaderboard.csv": out.getvalue(),
    }


ALPACA_EVAL_SOURCE = PublicSource(
    "alpaca_eval",
    f"{ALPACA_EVAL[0]}@{ALPACA_EVAL[1][:7]}: results/<model>/weighted_alpaca_eval_gpt4_turbo, "
    "AlpacaEval 2.0 leaderboard",
    build_alpaca_eval,
)


# ---------------------------------------------------------------------------------------------------------------
# MT-Bench (closest single source, see the module docstring)
# ---------------------------------------------------------------------------------------------------------------
def _between(text: str, start: str, end: str) -> str | None:
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    return text[i + len(start) : j] if j >= 0 else None


def build_mtbench(fetch: Fetcher) -> dict[str, str]:
    questions = fetch.github(FASTCHAT, "fastchat/llm_judge/data/mt_bench/question.jsonl", "MT-Bench questions")
    judgments = fetch.hub(MTBENCH_SPACE, MTBENCH_JUDGMENTS, "FastChat's GPT-4 single-answer grades", "space")
    by_id = {q["question_id"]: q for q in map(json.loads, questions.read_text(encoding="utf-8").splitlines()) if q}
    rows, seen = [], set()
    for line in judgments.read_text(encoding="utf-8").splitlines():
        j = json.loads(line) if line.strip() else {}
        prompt = (j.get("judge") or [None, None])[1]
        key = (j.get("question_id"), j.get("model"))
        if j.get("turn") != 1 or prompt not in ("single-v1", "single-math-v1") or key in seen or key[0] not in by_id:
            continue
        answer = _between(j["user_prompt"], "[The Start of Assistant's Answer]\n", "\n[The End of Assistant's Answer]")
        if answer is None or not isinstance(j.get("score"), (int, float)) or j["score"] < 1:  # -1: grade unparsed
            continue
        seen.add(key)
        question = by_id[key[0]]
        rows.append(
            {
                "id": f"mtb1-{key[0]}-{key[1]}",
                "source": f"{MTBENCH_SPACE} (Space):{MTBENCH_JUDGMENTS}",
                "question_id": key[0],
                "category": question["category"],
                "instruction": question["turns"][0],
                "response": answer,
                "model": key[1],
                "label": float(j["score"]),
                # the reference GPT-4 saw (math, reasoning, coding), cut from the prompt it was shown
                "reference": _between(
                    j["user_prompt"], "[The Start of Reference Answer]\n", "\n[The End of Reference Answer]"
                ),
                "label_scale": f"GPT-4 single-answer grade 1-10 (FastChat MT-Bench prompt {prompt})",
                "judge_prompt": prompt,
            }
        )
    if not rows:
        raise PublicDataUnavailable("FastChat's judgment file holds no usable turn-1 grade")
    return {"mtbench_gpt4/mtbench_gpt4_single_turn1.jsonl": _jsonl(rows)}


MTBENCH_SOURCE = PublicSource(
    "mtbench",
    f"{FASTCHAT[0]}@{FASTCHAT[1]} questions, {MTBENCH_SPACE} Space {MTBENCH_JUDGMENTS}",
    build_mtbench,
    differs="GPT-4 grades of FastChat's own models, not the 22 fork models of the project's file (same questions, "
    "prompts and 1-10 scale)",
)


# ---------------------------------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------------------------------
PROMETHEUS_SECTIONS = (
    "###The instruction to evaluate:",
    "###Response to evaluate:",
    "###Reference Answer (Score 5):",
    "###Score Rubrics:",
    "###Feedback:",
)
DIALOGUE_HEADER = (
    "Here is a previous dialogue between an assistant and an user. Generate a human preferable "
    "response by the assistant."
)


def prometheus_sections(prompt: str) -> tuple[str, str, str, str] | None:
    """Instruction, response, reference answer and rubric cut out of Prometheus' absolute-grading prompt."""
    starts = [prompt.find(head) for head in PROMETHEUS_SECTIONS]
    if min(starts) < 0 or starts != sorted(starts):
        return None
    parts = [prompt[s + len(h) : e].strip() for s, h, e in zip(starts, PROMETHEUS_SECTIONS, starts[1:], strict=False)]
    instruction = parts[0].removeprefix(DIALOGUE_HEADER).strip()
    if instruction.endswith("Assistant:"):  # a dialogue ends with the turn to be answered
        instruction = instruction.removesuffix("Assistant:").rstrip()
    return instruction, parts[1], parts[2], parts[3]


def build_prometheus(fetch: Fetcher) -> dict[str, str]:
    rows = []
    for bench, path in PROMETHEUS_FILES:
        records = fetch.github(PROMETHEUS, path, f"Prometheus {bench}", required=False)
        for i, record in enumerate(_read_json(records) if records else []):
            sections = prometheus_sections(record["instruction"])
            scores = record.get("gpt4_score") or []
            if sections is None or not scores:
                continue
            mean = round(sum(scores) / len(scores), 4)
            rows.append(
                {
                    "id": f"prometheus-{bench}-{i}",
                    "source": f"prometheus-eval/{bench}",
                    "benchmark": bench,
                    "question_id": record["idx"],
                    "category": record.get("category"),
                    "instruction": sections[0],
                    "response": sections[1],
                    "reference": sections[2],
                    "rubric": sections[3],
                    "model": record.get("response_source"),
                    "label": mean,
                    "label_scale": "GPT-4 absolute score 1-5 (mean of 3 samples, Prometheus rubric prompt)",
                    "gpt4_scores": scores,
                }
            )
    if not rows:
        raise PublicDataUnavailable("no Prometheus file: " + fetch.missing_text())
    return {"prometheus_gpt4/prometheus_gpt4_pointwise_mtbench_vicuna.jsonl": _jsonl(rows)}


PROMETHEUS_SOURCE = PublicSource(
    "prometheus",
    f"{PROMETHEUS[0]}@{PROMETHEUS[1]}: eval/benchmark/data mt_bench_eval.json, vicuna_eval.json",
    build_prometheus,
)


# ---------------------------------------------------------------------------------------------------------------
# Human pairwise (LLMBar, PandaLM)
# ---------------------------------------------------------------------------------------------------------------
def pandalm_label(votes: list) -> tuple[str, int] | None:
    """The majority of PandaLM's three annotators (0 tie, 1 first answer, 2 second) and its size; None without one."""
    vote, count = Counter(str(v) for v in votes).most_common(1)[0]
    return ({"0": "tie", "1": "A", "2": "B"}.get(vote), count) if count >= 2 and vote in ("0", "1", "2") else None


def build_human_pairwise(fetch: Fetcher) -> dict[str, str]:
    rows = []
    for subset, path, origin in LLMBAR_SUBSETS:
        found = fetch.github(LLMBAR, path, f"LLMBar {subset}", required=False)
        for i, pair in enumerate(_read_json(found) if found else []):
            rows.append(
                {
                    "id": f"{subset}-{i}",
                    "source": f"{LLMBAR[0]}:{path}",
                    "subset": subset,
                    "instruction": pair["input"],
                    "response_a": pair["output_1"],
                    "response_b": pair["output_2"],
                    "reference": None,
                    "model_a": None,
                    "model_b": None,
                    "label": {1: "A", 2: "B"}[int(pair["label"])],
                    "label_origin": origin,
                }
            )
    found = fetch.github(PANDALM, PANDALM_FILE, "PandaLM test set", required=False)
    kept = 0
    for pair in _read_json(found) if found else []:
        votes = [pair.get(f"annotator{k}") for k in (1, 2, 3)]
        majority = pandalm_label(votes)
        if majority is None:
            continue
        extra = pair.get("input")
        models = str(pair.get("cmp_key", "")).split("_", 1)
        rows.append(
            {
                "id": f"pandalm-{kept}",
                "source": f"{PANDALM[0]}:{PANDALM_FILE}",
                "subset": "pandalm_test",
                "instruction": pair["instruction"]
                + (f"\n\n{extra}" if isinstance(extra, str) and extra.strip() else ""),
                "response_a": pair["response1"],
                "response_b": pair["response2"],
                "reference": None,
                "model_a": models[0] or None,
                "model_b": models[1] if len(models) == 2 else None,
                "label": majority[0],
                "label_origin": f"3 human annotators, majority ({majority[1]}/3); raw votes {[str(v) for v in votes]}",
            }
        )
        kept += 1
    if not rows:
        raise PublicDataUnavailable("no LLMBar or PandaLM file: " + fetch.missing_text())
    return {"human_pairwise/human_pairwise_llmbar_mtbench_pandalm.jsonl": _jsonl(rows)}


HUMAN_PAIRWISE_SOURCE = PublicSource(
    "human_pairwise",
    f"{LLMBAR[0]}@{LLMBAR[1]} Dataset/, {PANDALM[0]}@{PANDALM[1]} {PANDALM_FILE}",
    build_human_pairwise,
)
