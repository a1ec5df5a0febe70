"""The signal registry: a new self-evaluation signal is one registration, and labeling uses it with no other edit."""

from __future__ import annotations

import json

import pytest

from selfj_trl.errors import SelfJInputError
from selfj_trl.labeling import LabelingConfig, label_dataset
from selfj_trl.signals import SIGNALS, get_signal, register_signal, self_eval_methods
from selfj_trl.testing import make_tiny_embedder, tiny_instruction_rows


def test_builtin_signals_are_registered_with_their_settings_and_fingerprints():
    assert {"digits", "likelihood", "cosine"} <= set(SIGNALS)
    assert set(self_eval_methods()) >= {"digits", "likelihood"} and "cosine" not in self_eval_methods()
    assert get_signal("digits").settings == ("prompt_style",)
    assert get_signal("likelihood").settings == ("likelihood_method",)
    assert len(get_signal("digits").fingerprint()) == 8 and get_signal("digits").fingerprint() != \
        get_signal("likelihood").fingerprint()
    with pytest.raises(SelfJInputError, match="unknown signal"):
        get_signal("telepathy")


@pytest.fixture
def word_count_signal():
    """A trivial self-evaluation registered here, in the test file alone: longer answers rate higher (0-9)."""

    @register_signal("word_count", kind="self_eval", describe=lambda settings: "word count, capped at 9")
    def word_count(models, instructions, responses, references, settings, stats=None):
        return [float(min(len(r.split()), 9)) for r in responses]

    yield word_count
    SIGNALS.pop("word_count")


def test_a_signal_registered_in_a_test_labels_a_dataset(word_count_signal, tmp_path, tiny_policy):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in tiny_instruction_rows(3)))
    config = LabelingConfig(dataset_name=str(path), output_dir=str(tmp_path / "out"), policy=tiny_policy,
                            embedder=str(make_tiny_embedder(tmp_path / "embedder")), num_samples=2,
                            max_new_tokens=6, chunk_size=2, max_length=400, self_eval_method="word_count",
                            cosine_weight=0.0)
    table = label_dataset(config)
    assert len(table) > 0
    assert table["self_eval_score"] == [float(min(len(r.split()), 9)) for r in table["response"]]
    assert table["label"] == pytest.approx(table["self_eval_score"])  # cosine weight 0: the label is the signal
    card = (tmp_path / "out" / "README.md").read_text()
    assert "word count, capped at 9" in card


def test_unregistered_method_is_an_input_error():
    with pytest.raises(SelfJInputError, match="self_eval_method must be one of"):
        LabelingConfig(self_eval_method="word_count")
