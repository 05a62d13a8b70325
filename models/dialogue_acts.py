"""The reply structure of a dialogue as evidence for or against a new episode at an event.

A question sets up an answer (an adjacency pair). The turn after a question answers it, and an answer
continues its question's topic: it is evidence against a new episode there. A question that follows a
turn that was not one starts a new exchange, and can open a new topic. It is evidence for a new episode,
worth its surprisal in bits given how often this stretch of the session asks after a non-question.

In a chit-chat where questions are rare, a fresh question says a lot. In an assistant conversation
where the user asks after every answer, it says next to nothing.

The cue is computed over a window of acts around the event (the look-back and the look-ahead the
segmenter waits for anyway). Its evidence is in the same units as a z-score: −1 for an answer, and
``log2(1/P̂)`` for a fresh question. ``P̂ = (questions after a non-question + 1)/(non-questions + 2)``
within the window.

A turn is taken for a question when its text holds a question mark: ``?``, the full-width ``？``, or the
Arabic ``؟``. This is cheap and language-light, and it is measured, not assumed, to help
(bench/eval_segmentation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["is_question", "reply_cue"]

_QUESTION_MARKS = ("?", "？", "؟")


def is_question(text: str) -> bool:
    """Whether a turn asks something (holds a question mark)."""
    return any(mark in text for mark in _QUESTION_MARKS)


def reply_cue(acts: Sequence[bool], index: int) -> float:
    """Evidence (z units) that ``acts[index]`` opens a new episode: −1 when it follows a question (an
    answer), ``log2(1/P̂)`` when it is a question after a non-question, else 0. ``acts`` is the window
    of turns around it (True = question), ``index > 0`` its position there."""
    if index <= 0 or index >= len(acts):
        return 0.0
    if acts[index - 1]:
        return -1.0
    if not acts[index]:
        return 0.0
    after_other = [acts[i] for i in range(1, len(acts)) if not acts[i - 1]]
    p = (sum(after_other) + 1) / (len(after_other) + 2)
    return math.log2(1.0 / p)
