"""Crash consistency: SIGKILL every command that publishes something, at seeded random points, and count what survives.

For ``train``, ``score``, ``label``, ``best-of-n`` and ``evaluate`` (tiny models built locally, one CPU thread) each
loop runs the real command line in a subprocess and kills it: at a random point of its work (a number of score
chunks, shards or checkpoints on disk, or a random time), when the judge's staging folder appears, or at one of the
points of a folder's publication (:data:`selfj_trl.artifacts.CRASH_POINTS`, through ``SELFJ_CRASH_AT``). After each
kill what is on disk must be complete and loadable, absent, or refused in one line (the check every reader runs);
never silently partial. Then the same command runs again and must finish with the rows of an uninterrupted run.

    OMP_NUM_THREADS=1 python bench/crash_consistency.py                  # 8 kill points per command
    OMP_NUM_THREADS=1 python bench/crash_consistency.py --points 3 --seed 1 --commands score label

Prints, per command and in total: inputs tried (kill points), kills (runs really killed; a run that finished first
is not one), kills survived, rows lost. ``tests/test_crash_consistency.py`` runs these loops with fewer points.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from selfj_trl.artifacts import CRASH_ENV, require_complete_folder  # noqa: E402
from selfj_trl.errors import SelfJInputError  # noqa: E402


COMMANDS = ("score", "label", "best-of-n", "evaluate", "train")
#: Publication points reachable when a folder already exists ("staged" is also reached by a new folder).
REPLACE_POINTS = ("unmarked", "moving", "before_marker")


# ---------------------------------------------------------------------------------------------------------------
# Bookkeeping
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Tally:
    command: str
    tried: int = 0  # kill points tried
    kills: int = 0  # runs really killed
    survived: int = 0  # kills after which the disk was complete, absent or refused in one line
    rows_expected: int = 0
    rows_lost: int = 0  # rows of an uninterrupted run missing (or different) after the final rerun
    unit: str = "rows"  # what rows_expected / rows_lost count (a judge: weight tensors)
    failures: list[str] = field(default_factory=list)

    def record(self, run: Run, state: str, point: str) -> None:
        self.tried += 1
        ok = not state.startswith("PARTIAL")
        if run.killed:
            self.kills += 1
            self.survived += int(ok)
        elif run.rc != 0:
            self.failures.append(f"{point}: exit {run.rc} without a kill: {run.err.strip()[-300:]}")
        if not ok:
            self.failures.append(f"{point}: {state}")


@dataclass
class Run:
    rc: int
    killed: bool
    out: str
    err: str
    seconds: float


@dataclass
class Models:
    policy: str  # causal LM with a chat template
    judge: str  # complete judge folder
    embedder: str  # sentence-transformers folder
    base: str  # sequence classifier to train a judge from


def build_models(root: Path) -> Models:
    """The tiny models of tests/conftest.py, built under ``root``."""
    from transformers import AutoConfig, AutoTokenizer

    from selfj_trl.io import write_manifest
    from selfj_trl.judge_views import judge_format_config
    from selfj_trl.testing import make_tiny_embedder, make_tiny_llama

    judge = make_tiny_llama(root / "judge", kind="seqcls", chat=True)
    config = AutoConfig.from_pretrained(judge)
    config.selfj = judge_format_config(AutoTokenizer.from_pretrained(judge))
    config.save_pretrained(judge)
    write_manifest(judge)
    return Models(
        policy=str(make_tiny_llama(root / "policy", kind="causal", chat=True)),
        judge=str(judge),
        embedder=str(make_tiny_embedder(root / "embedder")),
        base=str(make_tiny_llama(root / "base", kind="seqcls", chat=True, seed=3)),
    )


def run_cli(
    args: list[str],
    logs: Path,
    *,
    crash_at: str | None = None,
    kill_when: Callable[[], bool] | None = None,
    kill_after: float | None = None,
    timeout: float = 600,
) -> Run:
    """``selfj-trl ARGS`` in a subprocess (one thread), SIGKILLed when ``kill_when()`` turns true or after
    ``kill_after`` seconds; ``crash_at`` makes it kill itself at that publication point."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    logs.mkdir(parents=True, exist_ok=True)
    out_file, err_file = logs / "stdout.txt", logs / "stderr.txt"
    started, killed = time.monotonic(), False
    with open(out_file, "w") as out, open(err_file, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "selfj_trl.cli", *args], cwd=REPO, env=env, stdout=out, stderr=err
        )
        while proc.poll() is None:
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"selfj-trl {args[0]} ran past {timeout} s")
            if (kill_when is not None and kill_when()) or (kill_after is not None and elapsed >= kill_after):
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.002)
        rc = proc.wait()
    return Run(
        rc, killed or rc == -signal.SIGKILL, out_file.read_text(), err_file.read_text(), time.monotonic() - started
    )


@contextmanager
def one_thread():
    """In-process reference runs use one thread, as the subprocesses do, so their floats match bit for bit."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_in_process(args: list[str]) -> None:
    """The uninterrupted reference: ``selfj-trl ARGS`` in this process (no start-up cost), one thread."""
    from selfj_trl.cli import main as cli

    err = StringIO()
    with one_thread(), redirect_stdout(StringIO()), redirect_stderr(err):
        code = cli(args)
    if code != 0:
        raise RuntimeError(f"reference `selfj-trl {args[0]}` failed (exit {code}): {err.getvalue()[-500:]}")


def random_time(rng: random.Random) -> str:
    """A kill after a random time: start-up, loading or the work itself, wherever it lands."""
    return f"at {rng.uniform(2.0, 12.0):.1f} s"


def kill_plan(args: list[str], logs: Path, point: str, conditions: dict[str, Callable[[], bool]]) -> Run:
    """Run once, killed at ``point``: a publication point, ``at N s``, or a named condition."""
    if point.startswith("at "):
        return run_cli(args, logs, kill_after=float(point.split()[1]))
    if point in conditions:
        return run_cli(args, logs, kill_when=conditions[point])
    return run_cli(args, logs, crash_at=point)


def folder_state(folder: Path, load: Callable[[Path], object]) -> str:
    """``absent``, ``refused`` (one line, as every reader refuses it), ``complete`` (``load`` read it), or
    ``PARTIAL: ...`` when a folder passes the check but does not load."""
    if not folder.exists() or not any(p for p in folder.iterdir() if not p.name.startswith(".")):
        return "absent"
    try:
        require_complete_folder(folder)
    except SelfJInputError as err:
        return "refused" if "\n" not in str(err) else f"PARTIAL: refusal is not one line: {err}"
    try:
        load(folder)
    except Exception as err:  # a folder that passed the check must load
        return f"PARTIAL: {folder.name} passed the completeness check but does not load ({type(err).__name__}: {err})"
    return "complete"


def cli_refuses(command: list[str]) -> str:
    """Run a reading command in-process: '' when it exits 2 with one line on stderr, else what happened."""
    from selfj_trl.cli import main as cli

    err = StringIO()
    with redirect_stdout(StringIO()), redirect_stderr(err):
        code = cli(command)
    lines = [line for line in err.getvalue().splitlines() if "error:" in line]
    return (
        ""
        if code == 2 and len(lines) == 1
        else f"PARTIAL: `selfj-trl {command[0]}` exit {code}: {err.getvalue()[-300:]}"
    )


def appears(path: Path, since: float) -> Callable[[], bool]:
    """True once ``path`` exists and was made after ``since`` (not one a killed run left behind)."""

    def check() -> bool:
        try:
            return path.stat().st_mtime >= since
        except OSError:
            return False

    return check


def leftovers(target: Path) -> list[str]:
    """Temporary names a killed run left next to ``target`` that the final run did not clean up."""
    return [p.name for p in target.parent.glob(f".{target.name}.tmp*")]


def lost(expected: list, got: list) -> int:
    """Rows of ``expected`` that ``got`` lacks (a multiset difference: duplicates do not make up for losses)."""
    return sum((Counter(expected) - Counter(got)).values())


# ---------------------------------------------------------------------------------------------------------------
# score: resumes from its cache; the output file appears only complete
# ---------------------------------------------------------------------------------------------------------------
def crash_score(work: Path, models: Models, rng: random.Random, points: int) -> Tally:
    tally = Tally("score")
    rows = 120
    data = work / "score_rows.jsonl"
    data.write_text(
        "".join(
            json.dumps({"instruction": f"question {i}", "response": "word " * rng.randint(0, 30)}) + "\n"
            for i in range(rows)
        )
    )
    common = ["score", "--judge", models.judge, "--dataset", str(data), "--device", "cpu", "--batch_size", "1"]
    reference = work / "score_reference.jsonl"
    run_in_process([*common, "--output_file", str(reference)])
    expected = reference.read_bytes()
    out = work / "scores.jsonl"
    args = [*common, "--output_file", str(out)]

    def cached() -> int:
        return sum(len(p.read_text().splitlines()) for p in work.glob(f".{out.name}.resume-*.jsonl"))

    plan = ["rows"] * max(1, points - 1) + (["staged"] if points > 1 else [])
    for point in plan:
        if point == "rows":
            target = cached() + rng.randint(1, rows - 8)  # chunks of 8 rows
            point = f"after {target} cached rows"
            run = run_cli(args, work / "logs", kill_when=lambda target=target: cached() >= target)
        else:
            run = run_cli(args, work / "logs", crash_at=point)
        state = (
            "absent"
            if not out.exists()
            else (
                "complete" if out.read_bytes() == expected else "PARTIAL: the output differs from an uninterrupted run"
            )
        )
        tally.record(run, state, point)
    final = run_cli(args, work / "logs")
    if final.rc != 0:
        tally.failures.append(f"final run: exit {final.rc}: {final.err.strip()[-300:]}")
    got = out.read_bytes().splitlines() if out.exists() else []
    tally.rows_expected = rows
    tally.rows_lost = lost(expected.splitlines(), got)
    if out.exists() and out.read_bytes() != expected:
        tally.failures.append("final output differs from an uninterrupted run")
    if leftovers(out):
        tally.failures.append(f"temporary files left: {leftovers(out)}")
    if tally.kills and "resumed" not in final.out:
        tally.failures.append("the final run did not resume from the killed runs' cache")
    return tally


# ---------------------------------------------------------------------------------------------------------------
# label: shards resume; the dataset is published into the output folder with its marker last
# ---------------------------------------------------------------------------------------------------------------
def label_key(row: dict) -> tuple:
    return (row["instruction_id"], row["sample_index"], row["response"], round(row["label"], 4))


def labeled_rows(folder: Path) -> list[tuple]:
    from datasets import load_from_disk

    return [label_key(r) for r in load_from_disk(str(folder)).to_list()]


def crash_label(work: Path, models: Models, rng: random.Random, points: int) -> Tally:
    tally = Tally("label")
    n = 8
    data = work / "label_rows.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "instruction": f"say the number {i}",
                    "reference": f"the number is {i}",
                    "response": f"it is {i}" if i % 3 else f"{i} {i}",
                }
            )
            + "\n"
            for i in range(n)
        )
    )
    flags = [
        "--dataset_name",
        str(data),
        "--policy",
        models.policy,
        "--embedder",
        models.embedder,
        "--response_column",
        "response",
        "--chunk_size",
        "1",
        "--generation_batch_size",
        "2",
        "--max_length",
        "400",
    ]
    run_in_process(["label", *flags, "--output_dir", str(work / "label_reference")])
    expected = labeled_rows(work / "label_reference")
    out = work / "labeled"
    args = ["label", *flags, "--output_dir", str(out)]

    def shards() -> int:
        return len(list((out / "shards").glob("chunk-*.jsonl")))

    publication = rng.sample(("staged", *REPLACE_POINTS), k=min(4, max(1, points // 2)))
    plan = ["shards"] * (points - len(publication)) + publication
    for point in plan:
        if point == "shards":
            target = min(n - 1, shards() + rng.randint(1, 3))
            point = f"after {target} shards"
            run = run_cli(args, work / "logs", kill_when=lambda target=target: shards() >= target)
        else:
            run = run_cli(args, work / "logs", crash_at=point)
        state = folder_state(out, labeled_rows)
        if state == "complete" and labeled_rows(out) != expected:
            state = "PARTIAL: a complete-looking folder with other rows than an uninterrupted run"
        if state == "refused":
            state = (
                cli_refuses(
                    [
                        "score",
                        "--judge",
                        models.judge,
                        "--dataset",
                        str(out),
                        "--output_file",
                        str(work / "never.jsonl"),
                    ]
                )
                or state
            )
        tally.record(run, state, point)
    final = run_cli(args, work / "logs")
    if final.rc != 0:
        tally.failures.append(f"final run: exit {final.rc}: {final.err.strip()[-300:]}")
    got = labeled_rows(out) if folder_state(out, labeled_rows) == "complete" else []
    tally.rows_expected, tally.rows_lost = len(expected), lost(expected, got)
    if got != expected:
        tally.failures.append("final labeled rows differ from an uninterrupted run")
    if leftovers(out):
        tally.failures.append(f"staging folders left: {leftovers(out)}")
    return tally


# ---------------------------------------------------------------------------------------------------------------
# best-of-n: staged next to the output folder, renamed into place (or swapped in over an existing one)
# ---------------------------------------------------------------------------------------------------------------
def crash_best_of_n(work: Path, models: Models, rng: random.Random, points: int) -> Tally:
    from datasets import load_from_disk

    tally = Tally("best-of-n")
    prompts = ["write a short poem about the sea", "what is two plus two ?", "name three colors"]
    data = work / "prompts.jsonl"
    data.write_text("".join(json.dumps({"instruction": p}) + "\n" for p in prompts))
    out, pairs = work / "bon", work / "bon_pairs"
    args = [
        "best-of-n",
        "--policy",
        models.policy,
        "--judge",
        models.judge,
        "--dataset",
        str(data),
        "--output_dir",
        str(out),
        "--n",
        "3",
        "--max_new_tokens",
        "4",
        "--device",
        "cpu",
        "--dpo_pairs_dir",
        str(pairs),
    ]

    def table(folder: Path) -> bytes:
        load_from_disk(str(folder))
        return (folder / "best_of_n.jsonl").read_bytes()

    run_in_process(args)  # the uninterrupted run: a new folder, renamed into place
    if folder_state(out, table) != "complete":
        tally.failures.append(f"uninterrupted run left {folder_state(out, table)}")
        return tally
    expected = table(out)
    # Killed while the next run's folder is swapped in over it, before that, or at a random time.
    plan = rng.sample(REPLACE_POINTS, k=min(len(REPLACE_POINTS), points))
    plan += (["staged"] if points > len(plan) else []) + [random_time(rng) for _ in range(points - len(plan) - 1)]
    for point in plan:
        run = kill_plan(args, work / "logs", point, {})
        state = folder_state(out, table)
        if state == "complete" and table(out) != expected:
            state = "PARTIAL: a complete-looking table that differs from an uninterrupted run"
        if state == "refused":
            state = (
                cli_refuses(
                    [
                        "score",
                        "--judge",
                        models.judge,
                        "--dataset",
                        str(out),
                        "--instruction_column",
                        "prompt",
                        "--response_column",
                        "best_response",
                        "--output_file",
                        str(work / "never.jsonl"),
                    ]
                )
                or state
            )
        tally.record(run, state, point)
    final = run_cli(args, work / "logs")
    got = table(out) if folder_state(out, table) == "complete" else b""
    if final.rc != 0:
        tally.failures.append(f"final run: exit {final.rc}: {final.err.strip()[-300:]}")
    tally.rows_expected = len(expected.splitlines())
    tally.rows_lost = lost(expected.splitlines(), got.splitlines())
    if got != expected:
        tally.failures.append("final table differs from an uninterrupted run")
    if leftovers(out):
        tally.failures.append(f"staging folders left: {leftovers(out)}")
    if folder_state(pairs, lambda f: load_from_disk(str(f))) != "complete":
        tally.failures.append("the DPO pairs folder is not complete after the final run")
    return tally


# ---------------------------------------------------------------------------------------------------------------
# evaluate: the report folder (which also holds the score cache) is rewritten in place between marker drop and marker
# ---------------------------------------------------------------------------------------------------------------
def report_figures(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "report.md").read_text()
    return {
        f"{s}/{n}": (r["n_scored"], {k: round(v, 6) for k, v in r["correlation"].items() if v is not None})
        for s, res in metrics["eval_sets"].items()
        for n, r in res["scorers"].items()
    }


def crash_evaluate(work: Path, models: Models, rng: random.Random, points: int) -> Tally:
    tally = Tally("evaluate")
    data = work / "eval_rows.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "instruction": f"question {i % 8}",
                    "response": "word " * rng.randint(1, 20),
                    "quality": rng.random() * 10,
                    "model": f"m{i % 3}",
                }
            )
            + "\n"
            for i in range(48)
        )
    )
    out = work / "evaluation"
    args = [
        "evaluate",
        "--judges",
        models.judge,
        "--baselines",
        "length",
        "--eval_sets",
        str(data),
        "--quality_column",
        "quality",
        "--bootstrap_resamples",
        "20",
        "--output_dir",
        str(out),
    ]
    run_in_process(args)
    if folder_state(out, report_figures) != "complete":
        tally.failures.append(f"uninterrupted run left {folder_state(out, report_figures)}")
        return tally
    expected = report_figures(out)
    plan = rng.sample(("unmarked", "before_marker"), k=min(2, points))
    plan += [random_time(rng) for _ in range(points - len(plan))]
    for point in plan:
        run = kill_plan(args, work / "logs", point, {})
        state = folder_state(out, report_figures)
        if state == "complete" and report_figures(out) != expected:
            state = "PARTIAL: a complete-looking report with other figures than an uninterrupted run"
        tally.record(run, state, point)
    final = run_cli(args, work / "logs")
    if final.rc != 0:
        tally.failures.append(f"final run: exit {final.rc}: {final.err.strip()[-300:]}")
    got = report_figures(out) if folder_state(out, report_figures) == "complete" else {}
    tally.rows_expected = sum(n for n, _ in expected.values())
    tally.rows_lost = sum(n - got.get(k, (0, None))[0] for k, (n, _) in expected.items())
    if got != expected:
        tally.failures.append("final report differs from an uninterrupted run")
    return tally


# ---------------------------------------------------------------------------------------------------------------
# train: the judge is staged inside output_dir and swapped in, marker last (selfj_trl.trainer.publish)
# ---------------------------------------------------------------------------------------------------------------
def judge_state(folder: Path) -> str:
    from selfj_trl.judge import SelfJudge

    if not folder.exists():
        return "absent"
    try:
        judge = SelfJudge.from_pretrained(str(folder), device="cpu")
    except SelfJInputError as err:
        return "refused" if "\n" not in str(err) else f"PARTIAL: refusal is not one line: {err}"
    except Exception as err:
        return f"PARTIAL: the judge folder passed the check but does not load ({type(err).__name__}: {err})"
    score = judge.score(["hello"], ["world"])[0]
    return "complete" if math.isfinite(score) else "PARTIAL: the judge scores NaN"


def judge_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def same_tensors(a: dict, b: dict) -> int:
    """How many of ``b``'s tensors ``a`` has, equal up to float noise."""
    import torch

    return sum(1 for k in b if k in a and torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4))


def crash_train(work: Path, models: Models, rng: random.Random, points: int) -> Tally:
    from datasets import Dataset

    from selfj_trl.testing import tiny_labeled_rows

    tally = Tally("train", unit="weight tensors")
    data = work / "labeled_by_user"
    Dataset.from_list(tiny_labeled_rows()).save_to_disk(str(data))  # a user's save_to_disk folder: read as it is
    steps = 4

    def args(out: Path) -> list[str]:
        return [
            "train",
            "--model_name_or_path",
            models.base,
            "--dataset_name",
            str(data),
            "--output_dir",
            str(out),
            "--max_steps",
            str(steps),
            "--save_strategy",
            "steps",
            "--save_steps",
            "1",
            "--per_device_train_batch_size",
            "4",
            "--learning_rate",
            "3e-3",
            "--report_to",
            "none",
            "--disable_tqdm",
            "true",
            "--seed",
            "0",
        ]

    run_in_process(args(work / "judge_reference"))
    expected = judge_weights(work / "judge_reference")
    out = work / "judge"
    staging = out / ".selfj-judge-staging"
    plan = ["staging appears"] + [
        rng.choice(("staging appears", f"checkpoint-{rng.randint(1, steps)}")) for _ in range(points - 1)
    ]
    for point in plan:
        path = staging if point == "staging appears" else out / point / "trainer_state.json"
        run = run_cli(args(out), work / "logs", kill_when=appears(path, time.time() - 1e-3))
        state = judge_state(out)
        if state == "complete" and same_tensors(judge_weights(out), expected) != len(expected):
            state = "PARTIAL: a complete-looking judge with other weights than an uninterrupted run"
        tally.record(run, state, point)
    final = run_cli(args(out), work / "logs")
    if final.rc != 0:
        tally.failures.append(f"final run: exit {final.rc}: {final.err.strip()[-300:]}")
    complete = judge_state(out) == "complete"
    tally.rows_expected = len(expected)
    tally.rows_lost = len(expected) - (same_tensors(judge_weights(out), expected) if complete else 0)
    if not complete:
        tally.failures.append(f"final judge is not complete: {judge_state(out)}")
    return tally


LOOPS = {
    "score": crash_score,
    "label": crash_label,
    "best-of-n": crash_best_of_n,
    "evaluate": crash_evaluate,
    "train": crash_train,
}


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=8, help="kill points per command")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=COMMANDS)
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="selfj-crash-") as tmp:
        root = Path(tmp)
        models = build_models(root / "models")
        tallies = []
        for command in args.commands:
            work = root / command
            work.mkdir()
            tally = LOOPS[command](work, models, random.Random(f"{args.seed}:{command}"), args.points)
            tallies.append(tally)
            print(
                f"{command:>10}: inputs tried {tally.tried}, kills {tally.kills}, kills survived {tally.survived}, "
                f"{tally.unit} lost {tally.rows_lost} of {tally.rows_expected}"
                + (f"; FAILURES: {tally.failures}" if tally.failures else ""),
                flush=True,
            )
    total = {k: sum(getattr(t, k) for t in tallies) for k in ("tried", "kills", "survived", "rows_lost")}
    print(
        f"{'total':>10}: inputs tried {total['tried']}, kills {total['kills']}, kills survived "
        f"{total['survived']}, rows lost {total['rows_lost']} ({time.monotonic() - started:.0f} s, seed {args.seed})"
    )
    return 1 if any(t.failures for t in tallies) else 0


if __name__ == "__main__":
    sys.exit(main())
