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
    base = dict(
        output_dir=str(out),
        per_device_train_batch_size=4,
        learning_rate=3e-3,
        max_steps=6,
        logging_steps=1,
        save_strategy="steps",
        save_steps=3,
        report_to="none",
        seed=0,
        disable_tqdm=True,
    )
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
    flag_secret = "hf_secret_TEST123"  # given as --hub_token: pickled into every checkpoint's training_args.bin before
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", secret)
    base = str(make_tiny_llama(tmp_path / "base", kind="seqcls", chat=True, seed=4))
    out = tmp_path / "run"
    args = _args(out, max_steps=3, save_steps=1, hub_token=flag_secret)
    trainer = SelfJRewardTrainer(model=base, args=args, train_dataset=Dataset.from_list(labeled_rows()))
    trainer.train()
    trainer.save_state()
    trainer.save_model(str(out / "judge"))
    assert trainer.args.hub_token == flag_secret  # kept in memory: pushing still authenticates
    printed = capfd.readouterr()
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert [p.name for p in checkpoints] == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    for checkpoint in checkpoints:
        saved = torch.load(checkpoint / "training_args.bin", weights_only=False)
        assert saved.hub_token is None and saved.learning_rate == args.learning_rate  # the rest of the args kept
    for token in (secret, flag_secret):
        assert token not in printed.out and token not in printed.err
        for path in out.rglob("*"):
            if path.is_file():
                assert token.encode() not in path.read_bytes(), path


def test_cli_hub_token_never_reaches_the_run_folder(tmp_path, capfd):
    """`selfj-trl train --hub_token ...` with a checkpoint at every step: no file under output_dir holds the token."""
    from selfj_trl.cli import main as cli

    secret = "hf_secret_TEST123"
    base = str(make_tiny_llama(tmp_path / "base", kind="seqcls", chat=True, seed=5))
    data = tmp_path / "labeled"
    Dataset.from_list(labeled_rows()).save_to_disk(str(data))
    out = tmp_path / "judge"
    code = cli(
        [
            "train",
            "--model_name_or_path",
            base,
            "--dataset_name",
            str(data),
            "--output_dir",
            str(out),
            "--max_steps",
            "2",
            "--save_strategy",
            "steps",
            "--save_steps",
            "1",
            "--per_device_train_batch_size",
            "4",
            "--report_to",
            "none",
            "--hub_token",
            secret,
            "--disable_tqdm",
            "true",
        ]
    )
    printed = capfd.readouterr()
    assert code == 0, printed.err[-2000:]
    assert (out / "checkpoint-2" / "training_args.bin").exists() and (out / "model.safetensors").exists()
    assert secret not in printed.out and secret not in printed.err
    files = [path for path in out.rglob("*") if path.is_file()]
    assert len(files) > 10
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
