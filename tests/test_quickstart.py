"""The main job end to end on tiny models and tiny slices: every artifact is written; a re-run is all cached."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_from_disk
from PIL import Image

from selfj_trl.io import read_jsonl, shared_data_dir
from selfj_trl.judge import calibrate_threshold
from selfj_trl.quickstart import (
    BUNDLED_REFERENCES,
    GIVEN_ANSWER_KINDS,
    QuickstartConfig,
    headline,
    pick_line,
    run_quickstart,
)
from selfj_trl.testing import make_tiny_llama


REPO = Path(__file__).resolve().parents[1]


def test_quickstart_tiny_end_to_end(tmp_path, tiny_policy, tiny_embedder, capsys):
    judge_base = str(make_tiny_llama(tmp_path / "judge_base", kind="seqcls", chat=True))
    cfg = QuickstartConfig(
        output_dir=str(tmp_path / "qs"),
        policy=tiny_policy,
        embedder=tiny_embedder,
        judge_base=judge_base,
        n_train_instructions=4,
        n_seed_tasks=2,
        n_bundled_instructions=6,
        num_samples=2,
        max_new_tokens=6,
        num_train_epochs=1,
        eval_max_instructions=2,
        bon_prompts=2,
        bon_n=3,
        tiny=True,
    )
    results = run_quickstart(cfg)
    out = Path(cfg.output_dir)

    labeled = load_from_disk(str(out / "labeled"))
    assert "label" in labeled.column_names
    # per instruction: its samples and the three contrast answers, each labeled (none of them assigned a label by hand)
    kinds = [m for m, src in zip(labeled["model"], labeled["source"], strict=True) if src == "contrast"]
    assert sorted(set(kinds)) == sorted(GIVEN_ANSWER_KINDS) and len(kinds) == 3 * 6
    assert len(labeled) == 6 * (2 + 3)
    for row in labeled:
        if row["model"] == "reference":
            assert row["response"] == row["reference"]
        elif row["model"] == "other_instruction":
            assert row["response"] != row["reference"]
        elif row["model"] == "cut":
            assert row["reference"].startswith(row["response"]) and len(row["response"]) < len(row["reference"])
    if shared_data_dir() is None:  # a user's clone: the bundled full-length references, named with their license
        bundled = {r["instruction"]: r["reference"] for r in read_jsonl(REPO / BUNDLED_REFERENCES)}
        assert all(bundled.get(r["instruction"]) == r["reference"] for r in labeled)
    card = (out / "labeled" / "README.md").read_text()
    assert "Self-J" in card and "self-evaluation" in card and "where these settings came from" in card

    judge = out / "judge"
    config = json.loads((judge / "config.json").read_text())
    assert config["selfj"]["format"] in {"chat", "plain"} and len(config["id2label"]) == 1
    assert (judge / "model.safetensors").exists() and (judge / "README.md").exists()
    train_summary = next(r.summary for r in results if r.name.startswith("2."))
    assert re.search(r"judge trained: [1-9]\d* steps", train_summary) and "mean training loss" in train_summary
    # laid out as on the Hub: push_to_hub.py's dry run accepts both folders and lists the files it would upload
    dry = subprocess.run(
        [
            sys.executable,
            str(REPO / "push_to_hub.py"),
            "--judge_dir",
            str(judge),
            "--judge_repo",
            "me/selfj-judge",
            "--dataset_dir",
            str(out / "labeled"),
            "--dataset_repo",
            "me/selfj-labels",
            "--dry_run",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert dry.returncode == 0, dry.stderr[-2000:]
    for name in ("model.safetensors", "config.json", "README.md", "data/train-00000-of-00001.parquet"):
        assert name in dry.stdout

    use_summary = next(r.summary for r in results if r.name.startswith("4."))
    assert "mean judge score" not in use_summary  # the judge never grades its own picks
    if shared_data_dir() is not None:
        metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
        assert "alpaca_eval" in metrics["eval_sets"]
        eval_summary = next(r.summary for r in results if r.name.startswith("3."))
        assert "slice of 2 held-out AlpacaEval test instructions" in eval_summary and "best-of-15 pick" in eval_summary
        assert "best-of-15 pick graded by GPT-4" in use_summary
        assert (out / "evaluation" / "report.md").exists()
        pngs = list((out / "evaluation").glob("*.png"))
        assert len(pngs) >= 2
        for png in pngs:
            with Image.open(png) as im:
                im.verify()
    else:
        assert "no independent grader" in use_summary

    bon = load_from_disk(str(out / "use" / "best_of_n"))
    assert len(bon) == 5  # 2 shown instructions + 3 held apart for the threshold
    for row in bon:
        assert row["best_score"] == pytest.approx(max(row["scores"]))
    examples = (out / "use" / "examples.md").read_text()
    assert "judge's pick" in examples and "Selective instruction following" in examples
    assert ("ANSWER" in examples) or ("DECLINE" in examples)
    # the threshold comes from the held-apart instructions' answers only, never from the answers it gates
    use = json.loads((out / "use" / "summary.json").read_text())
    assert not set(use["calibration_instructions"]) & set(use["gated_instructions"])
    held_apart = [s for row in bon.select(range(2, 5)) for s in row["scores"]]
    assert use["threshold"] == pytest.approx(calibrate_threshold(held_apart, target_coverage=cfg.target_coverage))
    gated = [s for row in bon.select(range(2)) for s in row["scores"]]
    assert use["answered"] == sum(s >= use["threshold"] for s in gated) and use["gated_answers"] == 6
    assert "calibrated on 9 sampled answers to 3 held-apart instructions" in use_summary

    printed = capsys.readouterr().out
    assert "total wall time" in printed
    assert [r.cached for r in results] == [False] * len(results)

    again = run_quickstart(cfg)  # every stage is cached now
    assert all(r.cached for r in again)


def test_best_of_n_is_graded_independently_or_not_at_all():
    assert "no independent grader is available" in pick_line(None) and "gain" in pick_line(None)
    pick = {"pick": 0.3, "random": 0.1, "oracle": 0.6, "k_min": 15, "k_max": 15}
    metrics = {
        "config": {"max_instructions": 12},
        "eval_sets": {
            "alpaca_eval": {
                "n": 204,
                "best_of_k": pick,
                "scorers": {
                    "judge": {"correlation": {"spearman": 0.1}, "best_of_k": pick},
                    "length": {"correlation": {"spearman": 0.2}, "best_of_k": {**pick, "pick": 0.44}},
                },
            }
        },
    }
    line = pick_line(metrics)
    assert line.startswith("best-of-15 pick graded by GPT-4") and "judge 0.30, length 0.44" in line
    assert "random pick 0.10, oracle 0.60" in line
    top = headline(metrics)
    assert "slice of 12 held-out AlpacaEval test instructions (204 responses; a smoke run" in top
    assert "judge +0.10, length +0.20" in top
    metrics["config"]["max_instructions"] = None
    assert "all 204 held-out AlpacaEval test responses" in headline(metrics)


def test_quickstart_recipe_is_the_defaults_written_out():
    from dataclasses import asdict

    from trl import TrlParser

    (parsed,) = TrlParser(QuickstartConfig).parse_args_and_config(
        ["--config", str(REPO / "recipes" / "quickstart" / "quickstart.yaml")]
    )
    assert asdict(parsed) == asdict(QuickstartConfig())


def test_quickstart_without_any_held_out_data_says_so_in_one_line_and_exits_0(no_data_folder, capsys):
    """A fresh clone, offline, nothing cached: the evaluation stage names what it could not evaluate and how to get
    the data, and the quickstart still succeeds."""
    from selfj_trl.cli import main as cli_main

    out = no_data_folder / "qs"
    assert cli_main(["quickstart", "--output_dir", str(out), "--stages", "evaluate", "--tiny", "true"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "skipped, nothing evaluated" in line]
    assert lines and all("alpaca_eval: no data folder" in line for line in lines)
    assert "python -m selfj_trl.eval_sets alpaca_eval" in lines[0]
    assert f"remove {out / 'evaluation'} and re-run" in lines[0]
    assert (out / "evaluation" / "report.md").read_text().count("\n") == 1


def test_quickstart_trains_its_judge_with_the_recipe_loss_weights(tmp_path):
    """The quickstart's judge is the recipe's judge: its loss weights come from the judge base's recipe YAML (a
    finding moved there, not copied into code); an explicit flag wins; a base without a recipe gets the trainer's."""
    import yaml

    from selfj_trl.models import MINILM_ALIAS
    from selfj_trl.quickstart import judge_training_args
    from selfj_trl.trainer import SelfJRewardConfig

    recipe = yaml.safe_load((REPO / "recipes" / MINILM_ALIAS / "train" / "config_judge.yaml").read_text())
    args = judge_training_args(QuickstartConfig(judge_base=MINILM_ALIAS), tmp_path)
    for key in ("teacher_weight", "student_weight", "distill_weight", "distill_warmup_ratio"):
        assert getattr(args, key) == float(recipe[key]), key
    assert args.distill_weight != SelfJRewardConfig(output_dir=str(tmp_path)).distill_weight  # the recipe's choice
    assert (
        judge_training_args(QuickstartConfig(judge_base=MINILM_ALIAS, distill_weight=1.5), tmp_path).distill_weight
        == 1.5
    )
    own = judge_training_args(QuickstartConfig(judge_base=str(tmp_path / "my_judge")), tmp_path)
    assert own.distill_weight == SelfJRewardConfig(output_dir=str(tmp_path)).distill_weight


def test_bundled_references_are_full_answers_to_instructions_no_held_out_set_asks():
    """What a user's first judge learns from: references as long and as complete as the answers it will score (a
    judge trained against 9-word references learned to prefer short answers), and none of the instructions of a
    held-out test set, whose answers the evaluation then scores."""
    import statistics

    from selfj_trl.cards import DATA_LICENSES

    rows = read_jsonl(REPO / BUNDLED_REFERENCES)
    words = [len(r["reference"].split()) for r in rows]
    assert len(rows) >= QuickstartConfig().n_bundled_instructions and statistics.median(words) >= 80
    assert len({r["instruction"] for r in rows}) == len(rows) and len({r["id"] for r in rows}) == len(rows)
    assert dict(DATA_LICENSES)[BUNDLED_REFERENCES] == "apache-2.0"
    root = shared_data_dir()
    if root is None:
        pytest.skip("no data folder: the held-out instructions are not here to compare with")

    def norm(text):
        return " ".join(re.findall(r"[a-z0-9]+", str(text).lower()))

    asked = set()
    for path in root.glob("*/*.jsonl"):
        if path.parent.name == "self_instruct_seed":
            continue
        for r in read_jsonl(path):
            if r.get("split") != "train":  # AlpacaEval's train split may be labeled; every other row is held out
                asked |= {norm(r[k]) for k in ("instruction", "prompt") if r.get(k)}
    assert asked and not {norm(r["instruction"]) for r in rows} & asked
