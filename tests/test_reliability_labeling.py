"""Labeling survives SIGKILL at arbitrary points: the restarted run ends with exactly the uninterrupted rows."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import load_from_disk

from selfj_trl.artifacts import require_complete_folder
from selfj_trl.errors import SelfJInputError
from selfj_trl.io import check_complete
from selfj_trl.testing import make_tiny_embedder, tiny_instruction_rows


REPO = Path(__file__).resolve().parents[1]


def _cmd(rows: Path, out: Path, policy: str, embedder: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "selfj_trl.labeling",
        "--dataset_name",
        str(rows),
        "--output_dir",
        str(out),
        "--policy",
        policy,
        "--embedder",
        embedder,
        "--num_samples",
        "2",
        "--max_new_tokens",
        "6",
        "--chunk_size",
        "1",
        "--generation_batch_size",
        "1",
        "--max_length",
        "400",
    ]


def _key(rows: list[dict]) -> list[tuple]:
    return [(r["instruction_id"], r["sample_index"], r["response"], round(r["label"], 5)) for r in rows]


def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path, tiny_policy):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in tiny_instruction_rows(6)))
    embedder = str(make_tiny_embedder(tmp_path / "emb"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    reference = tmp_path / "uninterrupted"
    subprocess.run(_cmd(rows, reference, tiny_policy, embedder), check=True, env=env, cwd=REPO, capture_output=True)
    expected = _key(load_from_disk(str(reference)).to_list())

    out = tmp_path / "killed"
    rng = random.Random(0)
    kills = 0
    for target_shards in sorted(rng.sample(range(1, 6), 3)):  # kill once 1..5 shards exist, three times
        proc = subprocess.Popen(
            _cmd(rows, out, tiny_policy, embedder),
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if len(list((out / "shards").glob("chunk-*.jsonl"))) >= target_shards:
                time.sleep(rng.uniform(0.0, 0.5))  # land somewhere inside the next chunk's work
                break
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2  # the kills really interrupted runs
    assert not (out / "state.json").exists() or len(list((out / "shards").glob("chunk-*.jsonl"))) == 6
    if check_complete(out):  # not finished: every reader refuses it rather than read the shards as the table
        with pytest.raises(SelfJInputError, match="incomplete labeled dataset"):
            require_complete_folder(out)
    subprocess.run(_cmd(rows, out, tiny_policy, embedder), check=True, env=env, cwd=REPO, capture_output=True)
    got = _key(load_from_disk(str(out)).to_list())
    assert got == expected  # same rows, same order: none lost, none duplicated
    assert len(got) == len(set(got))
    assert not list(out.glob("**/*.tmp*"))  # no half-written temporary file left looking complete
    assert check_complete(out) == []  # published with its completion marker
