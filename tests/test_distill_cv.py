"""The distillation cross-validation (recipes/results/distill_cv.py) only ever reads train-split truth, keeps whole
instructions on one side of a fold, and labels a run in progress exactly as the finished run will."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from selfj_trl.io import load_script
from selfj_trl.labels import combine_labels


SCRIPT = Path(__file__).resolve().parents[1] / "recipes" / "results" / "distill_cv.py"


@pytest.fixture(scope="module")
def cv():
    return load_script(SCRIPT)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_dev_rows_are_train_split_honest_answers_only(cv, tmp_path):
    write_jsonl(
        tmp_path / "instructions.jsonl",
        [
            {"id": "a", "instruction": "train one", "reference": "ref a", "split": "train"},
            {"id": "b", "instruction": "test one", "reference": "ref b", "split": "test"},
            {"id": "c", "instruction": "train two", "reference": "ref c", "split": "train"},
        ],
    )
    write_jsonl(
        tmp_path / "responses.jsonl",
        [
            {"id": i, "model": m, "response": f"{i}-{m}", "gpt4_win_prob": 0.5}
            for i in "abc"
            for m in ("m1", "m2", "NullModel", "gpt4_gamed")
        ],
    )
    # A test instruction asked for by its text is still never returned.
    rows = cv.dev_rows(tmp_path, {"train one", "test one"})
    assert sorted(r["response"] for r in rows) == ["a-m1", "a-m2"]
    assert {r["reference"] for r in rows} == {"ref a"} and {r["question_id"] for r in rows} == {"a"}


def test_folds_keep_each_instruction_whole_and_are_stable(cv):
    instructions = [f"instruction {i}" for i in range(200)]
    first = {ins: cv.fold_of(ins, 3) for ins in instructions}
    assert first == {ins: cv.fold_of(ins, 3) for ins in reversed(instructions)}
    sizes = [sum(1 for f in first.values() if f == k) for k in range(3)]
    assert min(sizes) > 40, sizes  # every fold gets a fair share of instructions


def test_too_few_instructions_to_fill_every_fold_is_one_line_and_exit_2(cv, tmp_path, capsys, monkeypatch):
    """Three instructions can all hash into one fold; the other fold's judge would train on nothing."""
    from datasets import Dataset

    same_fold = [ins for ins in (f"instruction {i}" for i in range(50)) if cv.fold_of(ins, 2) == 1][:3]
    Dataset.from_list([{"instruction": ins, "response": "r", "label": 1.0} for ins in same_fold]).save_to_disk(
        str(tmp_path / "labeled")
    )
    capsys.readouterr()  # the save's progress bar
    monkeypatch.setattr(cv, "train_judge", lambda *a, **k: pytest.fail("trained a judge on an empty fold"))
    assert cv.main(["--labeled", str(tmp_path / "labeled"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "fill 1 of 2 folds" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", ["--labeled", "--second_labeled", "--contrast"])
def test_a_path_that_is_no_labeled_dataset_is_one_line_and_exit_2(cv, tmp_path, capsys, flag):
    from datasets import Dataset

    rows = [{"instruction": f"instruction {i}", "response": "r", "label": 1.0} for i in range(12)]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "labeled"))
    (tmp_path / "not_a_dataset").mkdir()
    (tmp_path / "not_a_dataset" / "notes.txt").write_text("a folder, but no saved dataset")
    args = {
        "--labeled": str(tmp_path / "labeled"),
        "--out": str(tmp_path / "out"),
        flag: str(tmp_path / "not_a_dataset"),
    }
    extra = ["--baselines_only"] if flag == "--second_labeled" else []
    capsys.readouterr()
    assert cv.main([x for kv in args.items() for x in kv] + extra) == 2
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]  # lines above it are datasets' progress bars, if any
    assert last.startswith(f"distill_cv: {flag} ") and "not_a_dataset" in last and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_folds_made_from_other_labels_are_refused_not_reused(cv, tmp_path, capsys, monkeypatch):
    """A fold's saved training rows and the judges trained on them belong to one label set; a run on other labels
    with the same --out would otherwise score judges that never saw its labels."""
    from datasets import Dataset

    names = [f"instruction {i}" for i in range(12)]
    rows = [
        {"instruction": ins, "response": r, "label": float(i + j)}
        for i, ins in enumerate(names)
        for j, r in enumerate(("a", "b"))
    ]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "labels_v1"))
    Dataset.from_list(rows[:-2]).save_to_disk(str(tmp_path / "labels_v2"))
    folds = {ins: cv.fold_of(ins, 2) for ins in names}
    for k in range(2):
        cv.training_rows(Dataset.from_list(rows), folds, k).save_to_disk(str(tmp_path / "out" / f"fold{k}" / "train"))
    capsys.readouterr()
    monkeypatch.setattr(cv, "run_fold", lambda *a, **k: None)  # nothing past the check
    assert (
        cv.main(["--labeled", str(tmp_path / "labels_v1"), "--out", str(tmp_path / "out"), "--settings", "distill0"])
        == 0
    )
    assert cv.main(["--labeled", str(tmp_path / "labels_v2"), "--out", str(tmp_path / "out")]) == 2
    assert "came from other labels" in capsys.readouterr().err


def test_the_headline_ranks_the_models_of_the_dev_fold_against_their_gpt4_means(cv):
    """A scorer that orders the models by their mean GPT-4 win probability on the fold ranks them at +1, and one
    that orders them backwards at -1, whatever it does to single answers."""
    from datasets import Dataset

    from selfj_trl.eval_sets.custom import load_custom_set
    from selfj_trl.evaluation.set_metrics import evaluate_pointwise

    rng = np.random.default_rng(0)
    skill = {f"m{k}": k / 10 for k in range(5)}
    rows = [
        {
            "question_id": f"q{i}",
            "instruction": f"question {i}",
            "response": f"{m} answer {i}",
            "model": m,
            "gpt4_win_prob": float(np.clip(s + rng.normal(0, 0.05), 0, 1)),
        }
        for i in range(12)
        for m, s in skill.items()
    ]
    ds = load_custom_set(Dataset.from_list(rows), "gpt4_win_prob", name="dev0")
    by_model = np.array([skill[r["model"]] for r in rows])
    noise = rng.normal(0, 0.01, len(rows))
    assert cv.headline(evaluate_pointwise(ds, by_model + noise, None, n_resamples=20))["ranking"] == pytest.approx(1.0)
    assert cv.headline(evaluate_pointwise(ds, -by_model + noise, None, n_resamples=20))["ranking"] == pytest.approx(
        -1.0
    )


def test_labels_so_far_equal_what_the_finished_run_computes(cv, tmp_path):
    shards = tmp_path / "run" / "shards"
    shards.mkdir(parents=True)
    rows = [
        {"instruction": f"q{i}", "response": "r", "self_eval_score": 1.5 * i, "cosine_similarity": 0.2 * i - 0.3}
        for i in range(6)
    ]
    write_jsonl(shards / "chunk-000000-n3.jsonl", rows[:3])
    write_jsonl(shards / "chunk-000001-n3.jsonl", rows[3:])
    (shards / "manifest.json").write_text("{}")
    table = cv.labels_so_far(tmp_path / "run", 0.25)
    expected = combine_labels(
        [r["self_eval_score"] for r in rows], [r["cosine_similarity"] for r in rows], cosine_weight=0.25
    )
    assert table["label"] == pytest.approx(expected) and table["instruction"] == [r["instruction"] for r in rows]
    with pytest.raises(SystemExit):
        cv.labels_so_far(tmp_path / "empty", 0.25)


def test_the_table_shows_how_much_of_its_label_each_view_learned(cv):
    def fold(student_fit):
        views = {
            v: {"spearman": 0.1, "within": 0.2, "pick": 0.3, "ranking": 0.5, "lean": 0.7}
            for v in ("student", "teacher", *cv.BASELINES)
        }
        views["student"]["lean"] = student_fit
        views["student"].update(vs_label=student_fit, vs_label_within=student_fit / 2)
        views["teacher"].update(vs_label=0.8, vs_label_within=0.6)
        return {**views, "n_dev_rows": 10}

    text = cv.table({"distill0": {"folds": [fold(0.2), fold(0.4)]}})
    student = next(line for line in text.splitlines() if line.startswith("| distill0 | student"))
    assert student.endswith("| +0.300 | +0.300 / +0.150 |"), student  # the length lean, then the fit
    assert "| - | length | +0.100 | +0.200 | +0.300 | +0.500 | +0.700 |  |" in text


def test_the_label_probe_fits_a_known_linear_label():
    probe = load_script(SCRIPT.with_name("label_probe.py"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    w = probe.ridge(x, x @ np.array([1.0, -2.0, 0.5]) + 3.0, alpha=1e-6)
    assert np.allclose(w, [1.0, -2.0, 0.5, 3.0], atol=1e-6)


def test_every_setting_names_its_loss_so_a_recipe_change_cannot_change_what_it_means(cv):
    """Settings run on top of the MiniLM recipe; when the recipe's loss changed (pointwise -> pairwise), a setting
    that did not name its own would have trained a different judge under the same name as the cached one."""
    for name, flags in cv.SETTINGS.items():
        loss = flags[flags.index("--loss_type") + 1]
        assert loss == ("pairwise" if name.startswith("pairwise") else "pointwise"), name
        assert "--per_device_train_batch_size" in flags, name
        assert flags[flags.index("--max_steps") + 1] == "-1", name  # by epochs, or by pairs per labeled row
        assert flags.count("--pairs_per_row") == 1, name  # a second copy would silently override the first
        pairs = float(flags[flags.index("--pairs_per_row") + 1])
        assert (pairs >= 1.0) if loss == "pairwise" else (pairs == 0.0), name


def test_a_save_killed_midway_is_cleared_and_redone(cv, tmp_path):
    """A killed run leaves ``train.tmp`` behind; the next run must not save over it and carry its leftovers along."""
    from datasets import Dataset, load_from_disk

    stale = tmp_path / "fold0" / "train.tmp"
    stale.mkdir(parents=True)
    (stale / "data-00000-of-00001.arrow").write_bytes(b"half a file")
    (stale / "cache-0a1b.arrow").write_bytes(b"a cache file the finished save would not have")
    rows = Dataset.from_list([{"instruction": "q", "response": r, "label": float(i)} for i, r in enumerate("abc")])
    cv.save_training_rows(rows, tmp_path / "fold0" / "train")
    assert load_from_disk(str(tmp_path / "fold0" / "train"))["response"] == ["a", "b", "c"]
    assert not stale.exists() and not (tmp_path / "fold0" / "train" / "cache-0a1b.arrow").exists()


def test_contrast_answers_are_paired_with_the_answer_they_were_built_from(cv):
    from datasets import Dataset

    from selfj_trl.labeling.contrast import add_contrast_answers

    given = {"ins a": ["alpha beta gamma delta epsilon zeta", "short one"], "ins b": ["bee answer here"]}
    rows = [
        {"instruction_id": i, "instruction": ins, "reference": f"ref {ins}", "given": [{"response": a} for a in ans]}
        for i, (ins, ans) in enumerate(given.items())
    ]
    built = add_contrast_answers(rows, ["repeated", "padded", "cut", "other_instruction"], seed=1)
    contrast = Dataset.from_list(
        [
            {"instruction": r["instruction"], "response": c["response"], "model": c["model"], "label": 1.0}
            for r in built
            for c in r["contrast"]
        ]
    )
    labeled = Dataset.from_list(
        [{"instruction": ins, "response": a, "label": float(len(a))} for ins, ans in given.items() for a in ans]
    )
    pairs = cv.contrast_cv.contrast_pairs(contrast, labeled, {"ins a", "ins b"})
    # every repeated, padded and cut answer found its source; the off-topic one has none to be paired with
    assert sorted(p["kind"] for p in pairs) == sorted(
        [k for r in built for c in r["contrast"] if (k := c["model"]) != "other_instruction"]
    )
    for p in pairs:
        assert p["source"] in given[p["instruction"]] and p["source_label"] == float(len(p["source"]))
        if p["kind"] == "repeated":
            assert p["response"] == f"{p['source']}\n\n{p['source']}"
        elif p["kind"] == "padded":
            assert p["response"].startswith(p["source"] + "\n\n") and len(p["response"]) > len(p["source"]) + 2
        else:
            assert p["source"].startswith(p["response"]) and len(p["response"]) < len(p["source"])
    assert cv.contrast_cv.source_of("repeated", "x\n\ny", ["x", "y"]) is None  # not one answer said twice
    assert cv.contrast_cv.source_of("padded", "nothing like it", ["x"]) is None


def test_below_source_counts_ties_half_per_kind(cv):
    pairs = [{"kind": k} for k in ("repeated", "repeated", "repeated", "cut")]
    out = cv.contrast_cv.below_source(pairs, np.array([1.0, 2.0, 3.0, 5.0]), np.array([2.0, 2.0, 1.0, 4.0]))
    assert out == {"repeated": pytest.approx((1 + 0.5 + 0) / 3), "cut": 0.0}


def test_contrast_rows_join_only_their_training_folds(cv):
    from datasets import Dataset

    folds = {"one": 0, "two": 1}
    labeled = Dataset.from_list(
        [{"instruction": i, "response": f"{i} answer", "label": 1.0, "extra": 0} for i in folds]
    )
    contrast = Dataset.from_list(
        [{"instruction": i, "response": f"{i} said twice", "label": 2.0, "model": "repeated"} for i in folds]
    )
    rows = cv.with_contrast(cv.training_rows(labeled, folds, 0), contrast, folds, 0)
    assert rows.to_list() == [
        {"instruction": "two", "response": "two answer", "label": 1.0},
        {"instruction": "two", "response": "two said twice", "label": 2.0},
    ]


def graded_pool(folder: Path, label_is_grade: bool, seed: int) -> list[str]:
    """12 train instructions x 4 models with random GPT-4 grades, labeled with the self-evaluation at minus the
    grade and the cosine at 0.9 x the grade (the label: the grade itself, or 0); the data folder's arguments."""
    from datasets import Dataset

    names = [f"train instruction {i}" for i in range(12)]
    models = [f"m{k}" for k in range(4)]
    rng = np.random.default_rng(seed)
    grades = {(ins, m): float(rng.random()) for ins in names for m in models}
    texts = {(ins, m): f"{m} on {i}" + " word" * k for i, ins in enumerate(names) for k, m in enumerate(models)}
    write_jsonl(
        folder / "instructions.jsonl",
        [{"id": str(i), "instruction": ins, "reference": "ref", "split": "train"} for i, ins in enumerate(names)],
    )
    write_jsonl(
        folder / "responses.jsonl",
        [
            {"id": str(i), "model": m, "response": texts[ins, m], "gpt4_win_prob": grades[ins, m]}
            for i, ins in enumerate(names)
            for m in models
        ],
    )
    Dataset.from_list(
        [
            {
                "instruction": ins,
                "response": texts[ins, m],
                "label": grades[ins, m] if label_is_grade else 0.0,
                "self_eval_score": -grades[ins, m],
                "cosine_similarity": 0.9 * grades[ins, m],
            }
            for ins in names
            for m in models
        ]
    ).save_to_disk(str(folder / "labeled"))
    return ["--labeled", str(folder / "labeled"), "--out", str(folder / "out"), "--data_dir", str(folder)]


def test_baselines_only_scores_the_label_on_every_fold_and_trains_nothing(cv, tmp_path, monkeypatch, capsys):
    """The label's own figures on the folds need no judge; a label equal to GPT-4's grade must score +1 there."""
    args = graded_pool(tmp_path, label_is_grade=True, seed=0)
    monkeypatch.setattr(cv, "train_judge", lambda *a, **k: pytest.fail("trained a judge"))
    assert cv.main([*args, "--baselines_only"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())["baselines"]["folds"]
    assert len(results) == 2 and sum(f["n_dev_rows"] for f in results) == 48
    assert all(f["label"]["spearman"] == pytest.approx(1.0) for f in results)
    assert all(f["self_eval"]["spearman"] == pytest.approx(-1.0) for f in results)
    table = (tmp_path / "out" / "results.md").read_text()
    assert "student" not in table and "| - | label | +1.000 | +1.000 |" in table
    assert not (tmp_path / "out" / "fold0" / "train").exists()
    assert "label_w" not in table


def test_cosine_weights_remake_the_label_from_its_parts_and_each_fold_chooses(cv, tmp_path, monkeypatch, capsys):
    """A label remade at weight 1 is the cosine alone (here GPT-4's grade: +1), at 0 the self-evaluation alone (-1);
    both folds must choose weight 1, and the flag is refused where no label is remade."""
    args = graded_pool(tmp_path, label_is_grade=False, seed=1)
    monkeypatch.setattr(cv, "train_judge", lambda *a, **k: pytest.fail("trained a judge"))
    with pytest.raises(SystemExit) as refused:
        cv.main([*args, "--cosine_weights", "0.5"])
    assert refused.value.code == 2
    assert cv.main([*args, "--baselines_only", "--cosine_weights", "0", "0.05", "1"]) == 0
    folds = json.loads((tmp_path / "out" / "results.json").read_text())["baselines"]["folds"]
    assert all(f["label_w0"]["spearman"] == pytest.approx(-1.0) for f in folds)
    assert all(f["label_w0.05"]["spearman"] == pytest.approx(-1.0) for f in folds)
    assert all(f["label_w1"]["spearman"] == pytest.approx(1.0) for f in folds)
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| - | label_w1 | +1.000 | +1.000 |" in table
    assert "- fold 0 chooses label_w1: +1.000 there, +1.000 elsewhere" in table
    assert "- fold 1 chooses label_w1:" in table


def test_a_second_labeling_run_is_scored_beside_the_first_on_the_rows_both_labeled(cv, tmp_path, monkeypatch):
    """The second run's self-evaluation (here GPT-4's grade: +1) is scored on the rows both runs labeled only, the
    first run's (minus the grade: -1) beside it; a run that labeled none of them, or no --baselines_only, is refused."""
    from datasets import Dataset, load_from_disk

    args = graded_pool(tmp_path, label_is_grade=False, seed=2)
    monkeypatch.setattr(cv, "train_judge", lambda *a, **k: pytest.fail("trained a judge"))
    first = load_from_disk(str(tmp_path / "labeled"))
    covered = sorted(set(first["instruction"]))[:8]
    Dataset.from_list(
        [
            {"instruction": r["instruction"], "response": r["response"], "self_eval_score": -r["self_eval_score"]}
            for r in first
            if r["instruction"] in covered
        ]
    ).save_to_disk(str(tmp_path / "second"))
    with pytest.raises(SystemExit) as refused:
        cv.main([*args, "--second_labeled", str(tmp_path / "second")])
    assert refused.value.code == 2
    assert (
        cv.main([*args, "--baselines_only", "--second_labeled", str(tmp_path / "second"), "--cosine_weights", "1"])
        == 0
    )
    folds = json.loads((tmp_path / "out" / "results.json").read_text())["baselines"]["folds"]
    assert sum(f["n_dev_instructions"] for f in folds) == 8
    assert all(f["second_self_eval"]["spearman"] == pytest.approx(1.0) for f in folds)
    assert all(f["self_eval"]["spearman"] == pytest.approx(-1.0) for f in folds)
    assert all(f["label_both_w1"]["spearman"] == pytest.approx(1.0) for f in folds)  # the cosine alone, as at w=1
    assert "| - | second_self_eval | +1.000 | +1.000 |" in (tmp_path / "out" / "results.md").read_text()
    Dataset.from_list([{"instruction": "elsewhere", "response": "x", "self_eval_score": 1.0}]).save_to_disk(
        str(tmp_path / "stranger")
    )
    args[3] = str(tmp_path / "out2")
    assert cv.main([*args, "--baselines_only", "--second_labeled", str(tmp_path / "stranger")]) == 2


def test_the_mean_of_two_runs_is_put_back_on_the_first_runs_scale(cv):
    """Two runs that agree exactly average to the first run's own values, whatever the second's scale: each run is
    standardised before the mean, so neither weighs by its spread."""
    from datasets import Dataset

    first = Dataset.from_list(
        [{"instruction": "i", "response": f"r{k}", "self_eval_score": float(v)} for k, v in enumerate([1, 4, 2, 8])]
    )
    second = Dataset.from_list([{**r, "self_eval_score": 100 * r["self_eval_score"] - 7} for r in first])
    both = cv.label_mix.with_second_self_eval(first, second)
    assert both["both_self_eval"] == pytest.approx(first["self_eval_score"])
    assert both["second_self_eval"] == pytest.approx([93.0, 393.0, 193.0, 793.0])


def test_only_folds_trains_and_scores_those_folds_with_the_judge_recipe_given(cv, tmp_path, monkeypatch):
    """A judge too slow for every fold runs on the folds named, from the recipe named, and the table says which."""
    from selfj_trl.judge import SelfJudge

    args = graded_pool(tmp_path, label_is_grade=True, seed=0)
    trained = []
    monkeypatch.setattr(
        cv, "train_judge", lambda folder, judge_dir, flags, train_flags, config: trained.append((judge_dir, config))
    )

    class WordCounter:  # stands in for the trained judge: its scores are the answers' word counts
        def score(self, instructions, responses, references=None, batch_size=32):
            return [float(len(r.split())) for r in responses]

    monkeypatch.setattr(SelfJudge, "from_pretrained", classmethod(lambda cls, path, **kw: WordCounter()))
    recipe = "recipes/gemma-3-270m/train/config_judge.yaml"
    assert cv.main([*args, "--settings", "pairwise", "--only_folds", "1", "--judge_config", recipe]) == 0
    assert trained == [(tmp_path / "out" / "fold1" / "pairwise", recipe)]
    folds = json.loads((tmp_path / "out" / "results.json").read_text())["pairwise"]["folds"]
    assert [f["fold"] for f in folds] == [1] and folds[0]["student"]["lean"] == pytest.approx(1.0)
    assert not (tmp_path / "out" / "fold0").exists()
    assert "folds [1]; dev rows per fold" in (tmp_path / "out" / "results.md").read_text()
    with pytest.raises(SystemExit) as refused:
        cv.main([*args, "--only_folds", "2"])
    assert refused.value.code == 2
