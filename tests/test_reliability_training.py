"""Training resumes from its last checkpoint to the same weights; secrets never reach cards, configs or logs."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from datasets import Dataset
from safetensors.torch import load_file

from selfj_trl.testing import make_tiny_llama
from selfj_trl.testing import tiny_labeled_rows as labeled_rows
from selfj_trl.trainer import SelfJRewardConfig, SelfJRewardTrainer


def _args(out: Path, **kw) -> SelfJRewardConfig:
    base = dict(output_dir=str(out), per_device_train_batch_size=4, learning_rate=3e-3, max_steps=6, logging_steps=1,
                save_strategy="steps", save_steps=3, report_to="none", seed=0, disable_tqdm=True)
    return SelfJRewardConfig(**{**base, **kw})


def _train(base: str, out: Path, resume: bool = False) -> dict[str, torch.Tensor]:
    trainer = SelfJRewardTrainer(model=base, args=_args(out), train_dataset=Dataset.from_list(labeled_rows()))
    trainer.train(resume_from_checkpoint=True if resume else None)
    trainer.save_model(str(out / "judge"))
    return load_file(str(out / "judge" / "model.safetensors"))


def test_resume_from_checkpoint_reaches_the_same_weights(tmp_path):
    base = str(make_tiny_llama(tmp_path / "base", kind="seqcls", chat=True, seed=3))
    full = _train(base, tmp_path / "full")  # checkpoints at steps 3 and 6

    # A run that died after step 3: only its first checkpoint survives; restart with resume_from_checkpoint.
    died = tmp_path / "died"
    died.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-3", died / "checkpoint-3")
    resumed = _train(base, died, resume=True)
    assert (died / "checkpoint-6").exists()
    assert full.keys() == resumed.keys()
    for name in full:
        torch.testing.assert_close(resumed[name], full[name], atol=1e-5, rtol=1e-4, msg=name)


def test_tokens_never_written_to_outputs_or_logs(tmp_path, monkeypatch, capfd):
    secret = "hf_SelfJTestSecret0123456789abcdef"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", secret)
    base = str(make_tiny_llama(tmp_path / "base", kind="seqcls", chat=True, seed=4))
    out = tmp_path / "run"
    trainer = SelfJRewardTrainer(model=base, args=_args(out, max_steps=2, save_steps=1),
                                 train_dataset=Dataset.from_list(labeled_rows()))
    trainer.train()
    trainer.save_model(str(out / "judge"))
    printed = capfd.readouterr()
    assert secret not in printed.out and secret not in printed.err
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
