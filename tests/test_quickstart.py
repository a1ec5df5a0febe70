"""The main job end to end on tiny models and tiny slices: every artifact is written; a re-run is all cached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import load_from_disk
from PIL import Image

from selfj_trl.data import shared_data_dir
from selfj_trl.quickstart import QuickstartConfig, run_quickstart
from selfj_trl.testing import make_tiny_llama


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
    assert "Self-J" in (out / "labeled" / "README.md").read_text()

    judge = out / "judge"
    config = json.loads((judge / "config.json").read_text())
    assert config["selfj"]["format"] in {"chat", "plain"} and len(config["id2label"]) == 1
    assert (judge / "model.safetensors").exists() and (judge / "README.md").exists()

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
