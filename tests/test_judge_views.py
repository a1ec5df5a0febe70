"""The judge's views cut to one token budget: the start is never cut, the instruction stays whole, the response is cut
from its end past its own limit (the same in both views), the reference from its end to fit."""

from __future__ import annotations

import pytest

from selfj_trl.errors import SelfJInputError
from selfj_trl.judge_views import (
    build_views,
    format_student_view,
    format_teacher_view,
    parse_plain_view,
    tokenize_view,
    view_settings,
)
from selfj_trl.testing import make_tokenizer


INSTRUCTION = "write a short poem about the sea"
RESPONSE = " ".join(["the sea is blue and deep ."] * 12)  # 84 tokens
REFERENCE = " ".join(["good hello world one two three"] * 10)  # 60 tokens


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def contains(seq, sub):
    return any(seq[k : k + len(sub)] == sub for k in range(len(seq) - len(sub) + 1))


@pytest.mark.parametrize("chat", [True, False])
def test_views_that_fit_are_tokenized_exactly_as_trl_does(chat):
    tok = make_tokenizer(chat=chat)
    views = build_views(tok, INSTRUCTION, "four", "the answer is four", chat=chat, max_length=512)
    assert views.student == ids(tok, format_student_view(tok, INSTRUCTION, "four", chat=chat))
    assert views.teacher == ids(tok, format_teacher_view(tok, INSTRUCTION, "four", "the answer is four", chat=chat))
    assert not (views.instruction_cut or views.response_cut or views.reference_cut)
    unbounded = build_views(tok, INSTRUCTION, RESPONSE, REFERENCE, chat=chat)
    assert unbounded.teacher == ids(tok, format_teacher_view(tok, INSTRUCTION, RESPONSE, REFERENCE, chat=chat))


@pytest.mark.parametrize("chat", [True, False])
def test_over_long_views_keep_start_instruction_reference_head_and_the_same_response(chat):
    tok = make_tokenizer(chat=chat)
    max_length = 96
    views = build_views(tok, INSTRUCTION, RESPONSE, REFERENCE, chat=chat, max_length=max_length)
    full_student = ids(tok, format_student_view(tok, INSTRUCTION, RESPONSE, chat=chat))
    full_teacher = ids(tok, format_teacher_view(tok, INSTRUCTION, RESPONSE, REFERENCE, chat=chat))
    assert len(views.student) <= max_length and len(views.teacher) <= max_length
    assert views.response_cut and views.reference_cut and not views.instruction_cut
    # The start is never cut: both views open as the uncut ones do (position 0 is the same token in every view).
    assert views.student[:8] == full_student[:8] and views.teacher[:8] == full_teacher[:8]
    assert contains(views.student, ids(tok, INSTRUCTION)) and contains(views.teacher, ids(tok, INSTRUCTION))
    assert contains(views.teacher, ids(tok, REFERENCE)[:10])  # the reference's opening survives
    # Student and teacher judge the same response head; the response's end is what went.
    head = ids(tok, RESPONSE)[:20]
    assert contains(views.student, head) and contains(views.teacher, head)
    kept = [t for t in views.student if t in set(ids(tok, RESPONSE))]
    assert len(kept) < len(ids(tok, RESPONSE))
    if chat:  # the template closes the turn after the cut response, as it does after a whole one
        assert views.student[-1] == full_student[-1] == tok.convert_tokens_to_ids("<|end|>")
    # The same response tokens in both views: the teacher differs only by the reference.
    tail_student = views.student[len(views.student) - 10 :]
    assert contains(views.teacher, tail_student)


def test_a_huge_instruction_is_cut_from_its_tail_and_leaves_room_for_the_response():
    tok = make_tokenizer(chat=False)
    instruction = " ".join(["one two three four"] * 40)  # 160 tokens
    views = build_views(tok, instruction, RESPONSE, REFERENCE, chat=False, max_length=128)
    assert views.instruction_cut and views.response_cut
    assert contains(views.student, ids(tok, instruction)[:30]) and contains(views.student, ids(tok, RESPONSE)[:10])
    assert contains(views.teacher, ids(tok, REFERENCE)[:10])


def test_too_small_max_length_is_a_clear_error():
    tok = make_tokenizer(chat=False)
    with pytest.raises(SelfJInputError, match="max_length=8 leaves no room"):
        build_views(tok, INSTRUCTION, RESPONSE, REFERENCE, chat=False, max_length=8)


def test_plain_views_parse_back_into_their_parts():
    tok = make_tokenizer(chat=False)
    student = format_student_view(tok, INSTRUCTION, RESPONSE, chat=False)
    teacher = format_teacher_view(tok, INSTRUCTION, RESPONSE, REFERENCE, chat=False)
    assert parse_plain_view(student) == (INSTRUCTION, RESPONSE, None)
    assert parse_plain_view(teacher) == (INSTRUCTION, RESPONSE, REFERENCE)
    assert parse_plain_view("hello world") is None


def test_recorded_view_settings_are_used_and_old_judges_get_the_defaults():
    assert view_settings({"views": {"reference_share": 0.5, "instruction_share": 0.25}}) == {
        "reference_share": 0.5,
        "instruction_share": 0.25,
    }
    assert view_settings({}) == view_settings(None) == {"reference_share": 0.25, "instruction_share": 0.5}


def test_tokenize_view_keeps_the_start_of_over_long_texts():
    """Keeping the END of an over-long text would lose the teacher view's reference and a BERT judge's position 0."""
    tok = make_tokenizer(chat=False)
    text = format_teacher_view(tok, INSTRUCTION, RESPONSE, REFERENCE, chat=False)
    assert tokenize_view(tok, text, 16) == ids(tok, text)[:16]
