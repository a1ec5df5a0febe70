"""Shared fixtures: tiny models built locally (no Hub), offline mode forced for every test."""

from __future__ import annotations

import os


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

from selfj_trl.io import write_manifest
from selfj_trl.judge_views import judge_format_config
from selfj_trl.testing import make_tiny_embedder, make_tiny_llama, tiny_instruction_rows


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory):
    """A two-layer causal Llama with a chat template (the policy in labeling/best-of-n tests)."""
    return str(make_tiny_llama(tmp_path_factory.mktemp("tiny_policy"), kind="causal", chat=True))


@pytest.fixture(scope="session")
def tiny_plain_policy(tmp_path_factory):
    """The same, without a chat template (a base model: plain prompt format)."""
    return str(make_tiny_llama(tmp_path_factory.mktemp("tiny_plain_policy"), kind="causal", chat=False))


@pytest.fixture(scope="session")
def tiny_judge(tmp_path_factory):
    """A one-label sequence classifier saved the way a published judge is (``selfj`` section in its config)."""
    from transformers import AutoConfig, AutoTokenizer

    path = make_tiny_llama(tmp_path_factory.mktemp("tiny_judge"), kind="seqcls", chat=True)
    config = AutoConfig.from_pretrained(path)
    config.selfj = judge_format_config(AutoTokenizer.from_pretrained(path))
    config.save_pretrained(path)
    write_manifest(path)  # complete, as `selfj-trl train` leaves it (a judge without the marker is refused)
    return str(path)


@pytest.fixture(scope="session")
def tiny_embedder(tmp_path_factory):
    """A sentence-transformers folder (random one-layer BERT + mean pooling) standing in for MiniLM."""
    return str(make_tiny_embedder(tmp_path_factory.mktemp("tiny_embedder")))


@pytest.fixture
def no_data_folder(tmp_path, monkeypatch):
    """A user's fresh clone: ``SELFJ_SHARED_DATA`` pointed at an empty folder hides ../shared/data from every
    lookup; empty caches; offline."""
    import datasets
    import huggingface_hub

    (tmp_path / "no_shared_data").mkdir()
    monkeypatch.setenv("SELFJ_SHARED_DATA", str(tmp_path / "no_shared_data"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path


@pytest.fixture
def tiny_rows():
    return tiny_instruction_rows(6)
