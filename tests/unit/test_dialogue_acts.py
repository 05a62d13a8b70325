"""The reply structure's cue: an answer continues its question's topic; a fresh question is evidence for
a new one, worth more where questions are rare."""

from __future__ import annotations

import pytest

from memstream.models.dialogue_acts import is_question, reply_cue


@pytest.mark.parametrize(
    ("text", "question"),
    [("do you like cats ?", True), ("¿qué tal？", True), ("كيف حالك؟", True), ("i like cats .", False), ("", False)],
)
def test_a_question_holds_a_question_mark(text: str, question: bool) -> None:
    assert is_question(text) is question


def test_an_answer_is_evidence_against_a_new_episode() -> None:
    acts = [False, True, False, False]
    assert reply_cue(acts, 2) == -1.0  # it follows the question at 1


def test_a_fresh_question_says_more_where_questions_are_rare() -> None:
    chit_chat = [False, False, False, True, False, False, False, False, False, False]
    interview = [True, False] * 5  # a question after every answer: one more says little
    rare, routine = reply_cue(chit_chat, 3), reply_cue(interview, 4)
    assert rare > 1.5 and 0.0 < routine < 0.5, (rare, routine)
    assert reply_cue(chit_chat, 5) == 0.0  # neither a question nor an answer
    assert reply_cue(chit_chat, 0) == 0.0  # nothing before it
