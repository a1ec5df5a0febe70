"""Tiny models built locally, in seconds, for tests and smoke runs (no Hub, no downloads).

A word-level tokenizer trained on a few sentences (every digit is its own token, plus a space-marked duplicate for
digits so that multi-id digit handling is exercised) and a two-layer Llama. They are real ``transformers`` models:
everything that works on them goes through the same code paths as a real policy or judge.
"""

from __future__ import annotations

from pathlib import Path


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)

#: Hidden size of the tiny Llama (four heads of 8).
TINY_HIDDEN = 32

_CORPUS = [
    "write a short poem about the sea . the sea is blue and deep .",
    "what is two plus two ? the answer is four .",
    "rate the answer from 0 to 9 . rating : 7",
    "instruction response reference answer expert judge below against it .",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "### Instruction : Response : Reference Rating Answer ( 0 - 9 ) ,",
    "one two three four five six seven eight nine ten hello world good bad",
]


def make_tokenizer(chat: bool = True):
    """A ``PreTrainedTokenizerFast`` with digits 0-9 (twice each: plain and space-marked) and an optional chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    words = sorted({w for line in _CORPUS for w in line.split()} | set("0123456789") | {"#", ":", "?", "."})
    vocab = {tok: i for i, tok in enumerate(specials)}
    for w in words:
        vocab.setdefault(w, len(vocab))
    for d in "0123456789":  # a second id per digit, as SentencePiece's "▁7" next to "7"
        vocab.setdefault("▁" + d, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tok.decoder = decoders.Replace("▁", "")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|system|>", "<|end|>"],
    )
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_llama(path: str | Path, kind: str = "causal", chat: bool = True, seed: int = 0) -> Path:
    """Save a two-layer Llama (``causal`` LM or one-label ``seqcls``) with its tokenizer to ``path``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, LlamaConfig

    path = Path(path)
    tokenizer = make_tokenizer(chat=chat)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=TINY_HIDDEN,
        intermediate_size=2 * TINY_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        num_labels=1,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    cls = AutoModelForCausalLM if kind == "causal" else AutoModelForSequenceClassification
    model = cls.from_config(config)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def tiny_instruction_rows(n: int = 6) -> list[dict[str, str]]:
    """Instruction/reference rows written in the tiny tokenizer's vocabulary."""
    base = [
        ("write a short poem about the sea", "the sea is blue and deep"),
        ("what is two plus two ?", "the answer is four"),
        ("rate the answer from 0 to 9", "rating : 7"),
        ("hello world", "good hello world"),
        ("one two three", "four five six"),
        ("what is the answer ?", "the answer is good"),
    ]
    return [
        {
            "instruction": base[i % len(base)][0] + (f" {i}" if i >= len(base) else ""),
            "reference": base[i % len(base)][1],
        }
        for i in range(n)
    ]


def make_tiny_embedder(path: str | Path, dim: int = 16) -> Path:
    """A sentence-transformers folder (one-layer random BERT + mean pooling): stands in for all-MiniLM-L6-v2."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    if (path / "modules.json").exists():
        return path
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *"abcdefghijklmnopqrstuvwxyz0123456789",
        *sorted({w for line in _CORPUS for w in line.split() if len(w) > 1}),
    ]
    bert_dir = path / "bert"
    bert_dir.mkdir(parents=True, exist_ok=True)
    (bert_dir / "vocab.txt").write_text("\n".join(vocab))
    BertTokenizerFast(vocab_file=str(bert_dir / "vocab.txt")).save_pretrained(bert_dir)
    BertModel(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=dim,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=2 * dim,
        )
    ).save_pretrained(bert_dir)
    SentenceTransformer(modules=[Transformer(str(bert_dir)), Pooling(dim)], device="cpu").save(str(path))
    return path


# (instruction, reference) in the tiny vocabulary; each gets three responses of decreasing quality.
_ITEMS = [
    ("write a short poem about the sea", "the sea is blue and deep"),
    ("what is two plus two ?", "the answer is four"),
    ("hello world", "good hello world"),
    ("one two three", "four five six"),
]


def tiny_labeled_rows() -> list[dict]:
    """A labeled table shaped like the labeling stage's output (12 rows, 3 samples per instruction)."""
    rows = []
    for iid, (instruction, reference) in enumerate(_ITEMS):
        samples = [(reference, 9.0), (reference.split()[0] + " bad answer", 4.5), ("bad bad", 0.5)]
        for k, (response, label) in enumerate(samples):
            rows.append(
                {
                    "instruction": instruction,
                    "reference": reference,
                    "response": response,
                    "label": label,
                    "self_eval_score": label,
                    "self_eval_noref_score": 4.0,
                    "cosine_similarity": 0.5,
                    "sample_index": k,
                    "instruction_id": iid,
                }
            )
    return rows


def table_rows(table) -> list[dict]:
    """A table's rows with NaN as None, so that two tables compare equal when their values are (NaN != NaN)."""
    import math

    def clean(value):
        return None if isinstance(value, float) and math.isnan(value) else value

    return [{k: clean(v) for k, v in row.items()} for row in table.to_list()]
