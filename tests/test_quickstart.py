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

from selfj_trl.io import shared_data_dir
from selfj_trl.quickstart import QuickstartConfig, run_quickstart
from selfj_trl.testing import make_tiny_llama


REPO = Path(__file__).resolve().parents[1]


def test_quickstart_tiny_end_to_end(tmp_path, tiny_policy, tiny_embedder, capsys):
    judge_base = str(make_tiny_llama(tmp_path / "judge_base", kind="seqcls", chat=True))
    cfg = QuickstartConfig(
        output_dir=str(tmp_path / "qs"), policy=tiny_policy, embedder=tiny_embedder, judge_base=judge_base,
        n_train_instructions=4, n_seed_tasks=2, num_samples=2, max_new_tokens=6, num_train_epochs=1,
        eval_max_instructions=2, bon_prompts=2, bon_n=3, tiny=True,
    )
    results = run_quickstart(cfg)
    out = Path(cfg.output_dir)

    labeled = load_from_disk(str(out / "labeled"))
    assert len(labeled) >= 8 and "label" in labeled.column_names
    card = (out / "labeled" / "README.md").read_text()
    assert "Self-J" in card and "self-evaluation" in card and "where these settings came from" in card

    judge = out / "judge"
    config = json.loads((judge / "config.json").read_text())
    assert config["selfj"]["format"] in {"chat", "plain"} and len(config["id2label"]) == 1
    assert (judge / "model.safetensors").exists() and (judge / "README.md").exists()
    train_summary = next(r.summary for r in results if r.name.startswith("2."))
    assert re.search(r"judge trained: [1-9]\d* steps", train_summary) and "mean training loss" in train_summary
    # laid out as on the Hub: push_to_hub.py's dry run accepts both folders and lists the files it would upload
    dry = subprocess.run([sys.executable, str(REPO / "push_to_hub.py"), "--judge_dir", str(judge), "--judge_repo",
                          "me/selfj-judge", "--dataset_dir", str(out / "labeled"), "--dataset_repo", "me/selfj-labels",
                          "--dry_run"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert dry.returncode == 0, dry.stderr[-2000:]
    for name in ("model.safetensors", "config.json", "README.md", "data/train-00000-of-00001.parquet"):
        assert name in dry.stdout

    if shared_data_dir() is not None:
        metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
        assert "alpaca_eval" in metrics["eval_sets"]
        assert (out / "evaluation" / "report.md").exists()
        pngs = list((out / "evaluation").glob("*.png"))
        assert len(pngs) >= 2
        for png in pngs:
            with Image.open(png) as im:
                im.verify()

    bon = load_from_disk(str(out / "use" / "best_of_n"))
    assert len(bon) == 2
    for row in bon:
        assert row["best_score"] == pytest.approx(max(row["scores"]))
    examples = (out / "use" / "examples.md").read_text()
    assert "before" in examples and "Selective instruction following" in examples
    assert ("ANSWER" in examples) or ("DECLINE" in examples)

    printed = capsys.readouterr().out
    assert "total wall time" in printed
    assert [r.cached for r in results] == [False] * len(results)

    again = run_quickstart(cfg)  # every stage is cached now
    assert all(r.cached for r in again)


def test_quickstart_recipe_is_the_defaults_written_out():
    from dataclasses import asdict

    from trl import TrlParser

    (parsed,) = TrlParser(QuickstartConfig).parse_args_and_config(
        ["--config", str(REPO / "recipes" / "quickstart" / "quickstart.yaml")])
    assert asdict(parsed) == asdict(QuickstartConfig())
