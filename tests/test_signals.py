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
    assert get_signal("likelihood").settings == ("likelihood_method", "likelihood_target_tokens")
    assert (
        len(get_signal("digits").fingerprint()) == 8
        and get_signal("digits").fingerprint() != get_signal("likelihood").fingerprint()
    )
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
    config = LabelingConfig(
        dataset_name=str(path),
        output_dir=str(tmp_path / "out"),
        policy=tiny_policy,
        embedder=str(make_tiny_embedder(tmp_path / "embedder")),
        num_samples=2,
        max_new_tokens=6,
        chunk_size=2,
        max_length=400,
        self_eval_method="word_count",
        cosine_weight=0.0,
    )
    table = label_dataset(config)
    assert len(table) > 0
    assert table["self_eval_score"] == [float(min(len(r.split()), 9)) for r in table["response"]]
    assert table["label"] == pytest.approx(table["self_eval_score"])  # cosine weight 0: the label is the signal
    card = (tmp_path / "out" / "README.md").read_text()
    assert "word count, capped at 9" in card


def test_unregistered_method_is_an_input_error():
    with pytest.raises(SelfJInputError, match="self_eval_method must be one of"):
        LabelingConfig(self_eval_method="word_count")


# ---------------------------------------------------------------------------------------------------------------
# The sampler stops a plain-format policy at the next turn marker
# ---------------------------------------------------------------------------------------------------------------
def _forced_generate(policy, tokenizer, outputs, monkeypatch):
    """Make ``policy.generate`` record its arguments and ``tokenizer.batch_decode`` return ``outputs``: the policy is
    forced to write what a base model writes once its answer is over."""
    import torch

    calls = []

    def generate(input_ids, generation_config=None, **kwargs):
        calls.append({"config": generation_config, **kwargs})
        n = generation_config.num_return_sequences
        return torch.cat([input_ids.repeat_interleave(n, 0), torch.ones(len(input_ids) * n, 3, dtype=torch.long)], 1)

    monkeypatch.setattr(policy, "generate", generate)
    monkeypatch.setattr(tokenizer, "batch_decode", lambda ids, **kw: list(outputs[: len(ids)]))
    return calls


def test_plain_policy_samples_stop_at_the_next_turn_and_leaks_are_cut(tiny_plain_policy, monkeypatch):
    from selfj_trl.generation import sample_responses
    from selfj_trl.models import load_policy
    from selfj_trl.prompts import PLAIN_TURN_MARKER

    model, tok = load_policy(tiny_plain_policy)
    leaked = [
        "Paris.\n\n### Instruction:\nName the capital of Spain.\n\n### Response:\nMadrid.",
        "### Instruction: write more",
        "Two tips:\n1. sleep\n2. rest\n### Response:\nagain",
        "a clean answer",
    ]
    calls = _forced_generate(model, tok, leaked, monkeypatch)
    _, responses = sample_responses(model, tok, ["a", "b"], 2, {"max_new_tokens": 4})
    assert responses == [["Paris.", ""], ["Two tips:\n1. sleep\n2. rest", "a clean answer"]]
    assert "stopping_criteria" in calls[0] and PLAIN_TURN_MARKER == "\n### "


def test_chat_policy_samples_stop_at_eos_only(tiny_policy, monkeypatch):
    from selfj_trl.generation import sample_responses
    from selfj_trl.models import load_policy

    model, tok = load_policy(tiny_policy)
    calls = _forced_generate(model, tok, ["an answer\n### with a heading", "b"], monkeypatch)
    _, responses = sample_responses(model, tok, ["a"], 2, {"max_new_tokens": 4})
    assert responses == [["an answer\n### with a heading", "b"]]
    assert not calls[0]["config"].stop_strings and "tokenizer" not in calls[0]


def test_stop_string_fires_on_a_marker_that_ends_inside_a_token(tiny_plain_policy, caplog):
    """The stop criterion with a real tokenizer: the marker's last character (a space) starts the next token
    ("▁Instruction" in Gemma's vocabulary). A tokenizer transformers cannot map (the tiny word-level one) falls back
    to cutting after generation, with a warning, and sampling still works."""
    import torch

    from selfj_trl.generation import sample_responses, turn_stop_criteria
    from selfj_trl.models import load_policy

    model, tok = load_policy(tiny_plain_policy)
    assert turn_stop_criteria(tok) == [] and "cut after generation" in caplog.text
    _, responses = sample_responses(model, tok, ["hello world"], 2, {"max_new_tokens": 5}, seed=0)
    assert len(responses[0]) == 2
    try:
        from transformers import AutoTokenizer

        from selfj_trl.models import resolve_model

        gemma = AutoTokenizer.from_pretrained(resolve_model("gemma-3-270m"))
    except Exception:  # noqa: BLE001 - the offline Gemma is optional in the test environment
        pytest.skip("the offline Gemma tokenizer is not installed")
    (criterion,) = turn_stop_criteria(gemma)

    def fires(text):
        ids = torch.tensor([gemma(text, add_special_tokens=False)["input_ids"]])
        return bool(criterion(ids, None)[0])

    assert fires("Paris.\n\n### Instruction") and fires("Paris.\n### Response")
    assert not fires("Paris.") and not fires("Paris.\n\n###") and not fires("Paris. ### Response")


def test_samples_never_hold_another_modalitys_tokens(tiny_plain_policy):
    """Gemma 3 keeps ``<start_of_image>`` as an added token that is not special, so decoding leaves it in the text.
    A policy that prefers it above every other token still never writes it; real text added the same way stays."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfj_trl.generation import non_text_token_ids, sample_responses

    tok = AutoTokenizer.from_pretrained(tiny_plain_policy)
    tok.add_tokens(["<start_of_image>", "<table>"])
    model = AutoModelForCausalLM.from_pretrained(tiny_plain_policy)
    model.resize_token_embeddings(len(tok))
    image, table = tok.convert_tokens_to_ids(["<start_of_image>", "<table>"])
    assert non_text_token_ids(tok) == [image]
    head = torch.nn.Linear(model.lm_head.in_features, len(tok), bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[image] = 50.0  # the policy's favourite token by far, then <table>
        head.bias[table] = 25.0
    model.lm_head = head
    model.eval()
    _, responses = sample_responses(model, tok, ["hello world"], 2, {"max_new_tokens": 3}, seed=0)
    assert all("<start_of_image>" not in r and "<table>" in r for r in responses[0]), responses


# ---------------------------------------------------------------------------------------------------------------
# Likelihood: the baseline is the conditioned context emptied
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["reference_gain", "response_gain"])
def test_likelihood_baseline_is_the_conditioned_context_with_the_inner_text_emptied(tiny_plain_policy, method):
    from selfj_trl import prompts
    from selfj_trl.models import load_policy

    _, tok = load_policy(tiny_plain_policy)
    ins, resp, ref = "what is two plus two ?", "four", "the answer is four"
    cond, base, target = prompts.likelihood_views(tok, ins, resp, ref, method=method)
    emptied = {"response": ""} if method == "reference_gain" else {"reference": ""}
    args = {"response": resp, "reference": ref, **emptied}
    assert base == prompts.likelihood_views(tok, ins, args["response"], args["reference"], method=method)[0]
    assert base != cond and target == (ref if method == "reference_gain" else resp)
    assert base != prompts.generation_prompt(tok, ins)  # not the bare instruction (a per-instruction offset)


def test_likelihood_fingerprint_changed_with_the_baseline_so_old_scores_and_shards_are_not_reused(monkeypatch):
    from selfj_trl import prompts
    from selfj_trl.io import content_hash
    from selfj_trl.signals.likelihood import MAX_TARGET_TOKENS

    before = content_hash(
        prompts.LIKELIHOOD_REFERENCE_CONTEXT,
        prompts.LIKELIHOOD_DRAFT_CONTEXT,
        prompts.PLAIN_PROMPT_TEMPLATE,
        MAX_TARGET_TOKENS,
    )  # the key the old baseline wrote under
    assert get_signal("likelihood").fingerprint() != before
    config = LabelingConfig(
        dataset_name="x",
        self_eval_method="likelihood",
        likelihood_method="reference_gain",
        prompt_style="few_shot",
        cosine_weight=0.25,
    )
    shards = config.fingerprint()
    monkeypatch.setattr(prompts, "LIKELIHOOD_BASELINE", "another baseline")
    assert config.fingerprint() != shards  # the shard manifest follows the texts the policy reads


# ---------------------------------------------------------------------------------------------------------------
# Digits: the default prompt makes the rating the next token; names say what each prompt is
# ---------------------------------------------------------------------------------------------------------------
def test_default_digit_prompt_ends_with_the_rating_lead_and_old_names_are_aliases(tiny_plain_policy, tiny_policy):
    from selfj_trl import prompts
    from selfj_trl.labeling import SELFJ_DEFAULTS
    from selfj_trl.models import load_policy

    assert SELFJ_DEFAULTS["prompt_style"] == "rating_lead"
    assert LabelingConfig(dataset_name="x", policy="my-org/my-7b").prompt_style == "rating_lead"
    assert LabelingConfig(dataset_name="x", policy="my-org/my-7b", prompt_style="zero_shot").prompt_style == "no_lead"
    assert prompts.check_prompt_style("zero_shot_lead") == "rating_lead"
    _, plain = load_policy(tiny_plain_policy)
    _, chat = load_policy(tiny_policy)
    assert prompts.build_judge_prompt(plain, "hello", "world", "good").text.endswith("### Rating (0-9): ")
    assert prompts.build_judge_prompt(chat, "hello", "world", "good").text.endswith("Rating: ")
    no_lead = prompts.build_judge_prompt(plain, "hello", "world", "good", prompt_style="zero_shot").text
    assert no_lead.endswith("### Rating (0-9):")
    assert "paper" not in prompts.self_eval_prompt_text("digits").lower()


# ---------------------------------------------------------------------------------------------------------------
# Throughput changes leave the scores as they were
# ---------------------------------------------------------------------------------------------------------------
def test_span_log_prob_equals_the_log_softmax_it_replaces():
    import torch

    from selfj_trl.signals.prefix import span_log_prob

    torch.manual_seed(0)
    logits = torch.randn(37, 5000) * 4
    target = torch.randint(0, 5000, (37,))
    before = float(torch.log_softmax(logits, -1).gather(-1, target[:, None]).sum())
    assert span_log_prob(logits, target) == pytest.approx(before, abs=1e-3, rel=1e-6)
    # bf16 logits (the default on bf16 CPUs) are upcast chunk by chunk: the same sum as upcasting them all at once,
    # whatever the chunk (37 rows leave a short last chunk)
    half = logits.to(torch.bfloat16)
    whole = float(torch.log_softmax(half.float(), -1).gather(-1, target[:, None]).sum())
    for chunk in (1, 8, 64):
        assert span_log_prob(half, target, chunk=chunk) == pytest.approx(whole, abs=1e-3, rel=1e-6)


def test_cosine_with_shared_references_equals_one_reference_per_row(tmp_path):
    from sentence_transformers import SentenceTransformer

    from selfj_trl.signals.cosine import cosine_similarities

    embedder = SentenceTransformer(str(make_tiny_embedder(tmp_path / "embedder")), device="cpu")
    responses = ["the sea is blue", "four", "hello world good", "bad", "the answer is four"]
    references = [
        "the sea is blue and deep",
        "the answer is four",
        "the sea is blue and deep",
        "the answer is four",
        "the answer is four",
    ]
    kw = {"normalize_embeddings": True, "convert_to_tensor": True, "show_progress_bar": False}
    before = (embedder.encode(responses, **kw) * embedder.encode(references, **kw)).sum(-1).clamp(-1, 1).tolist()
    assert cosine_similarities(embedder, responses, references) == pytest.approx(before, abs=1e-5)
