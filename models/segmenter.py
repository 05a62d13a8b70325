"""Streaming episodic segmentation of one session's events (EM-LLM style), with small bounded state.

Per event, in arrival order:

1. **Score** event t (`models.surprise` supplies the NLLs). With ``surprise="embedding"`` (default) the
   look-back context is the latest ``max_context`` events before t (or, with ``context="episode"``, the
   current episode's), the look-ahead the ``ahead`` events from t on. ``score="surprise"`` is the mean
   surprise of the look-ahead under the context (EM-LLM's event surprise when ``ahead=1``). The default
   ``"symmetric"`` is a two-sample likelihood ratio: the look-ahead's surprise under the look-back minus
   its surprise under its own fit, plus the same the other way round. It asks "are these two windows
   better explained apart?", and is not fooled by a window that is merely diverse. The default
   ``"multiscale"`` scores event t at the scales w (of 1, 2, 4, 8, 16) that fit the session's correlation
   length τ (`models.correlation_length`: within ``scale_band`` × τ; all of them while τ is unknown): the
   dissimilarity of the mean vectors of the w events before t and the w from t on (w = 1 is
   consecutive-turn coherence), each a robust z-score against that scale's values around t (its
   ``window`` before and the look-ahead the decision waits for, so a short session is judged from its
   start), averaged, plus the reply structure's cue (`models.dialogue_acts`: an answer to a question
   continues its topic, a fresh question may open one). It is an outlier above ``z_threshold``. The waits
   (``min_len``, ``peak_wait``) and the refinement's radius follow the smallest scale used, and once a
   session's long pauses have shown its conversations, an episode holds at least a typical conversation's
   events. Blocks cut short by the context's start or the session's end are not compared (but at the
   smallest scale), and a surprise at a flush needs a look-ahead as long as the scales used, on average.
0. **Pause**: an event after a pause of ``gap_s`` seconds or more, and ``gap_ratio`` times the session's
   median pause, seals everything before it (as `Segmenter.flush` does) and opens a new episode.
   With ``surprise="lm"`` the score is EM-LLM's: the mean token NLL of t's text under a causal language
   model given the last ``lm_context_tokens`` tokens of the session (computed when t arrives, batched
   across sessions by `Segmenter.lm_surprises`). ``"blend"`` averages the two, each first standardised
   against its own previous ``window`` values (weight ``blend_weight`` on the LM).
2. **Detect** (`models.boundaries`): a score above ``mean + gamma·std`` of the previous ``window``
   scores, in an episode of ``min_len`` events or more, arms a candidate; the candidate moves to any
   higher score and becomes a provisional boundary after ``peak_wait`` events without one. An episode
   reaching ``max_len`` is cut at its most surprising admissible event. The new episode is ``opened``.
3. **Refine** (`models.refinement`): once ``graph_context`` events from the provisional boundary on
   have arrived, it slides within ``±radius`` to the best modularity (or conductance) split of the
   similarity graph of the events around it, and the episode before it is ``sealed``. Sealed episodes
   never change.

Everything is a function of the event sequence: how the stream is cut into pushes, and any round trip
of `SessionState` through bytes between pushes, gives the same episodes.

The config is `models.segmentation_config.SegmentationConfig` (its ``state_bound`` caps the events a state
holds between pushes); the state and its byte format are `models.session_state.SessionState`. Vectors are
rounded to float16 on arrival, the precision the state stores, so a state that went through bytes decides
exactly as one that did not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from memstream.models.boundaries import exceeds
from memstream.models.correlation_length import MAX_LAG, correlation_length, select_scales
from memstream.models.dialogue_acts import is_question, reply_cue
from memstream.models.refinement import best_split, similarity_graph
from memstream.models.segmentation_config import SegmentationConfig
from memstream.models.session_state import SessionState
from memstream.models.surprise import LanguageModelSurprise, SurpriseContext, SurpriseModel, TokenScorer, make_surprise

__all__ = ["EpisodeChange", "Segmenter"]

_CONVERSATIONS_KEPT = 16  # pause-delimited conversation lengths a session remembers


@dataclass
class EpisodeChange:
    """An episode was opened (provisional start) or sealed (final members, never changes again)."""

    kind: Literal["opened", "sealed"]
    episode_index: int
    event_ids: list[str]
    start_ts: float
    end_ts: float
    centroid: np.ndarray | None = None


class Segmenter:
    """Stateless worker over `SessionState`s: the same instance serves every session."""

    def __init__(
        self,
        config: SegmentationConfig | None = None,
        surprise: SurpriseModel | None = None,
        lm: TokenScorer | None = None,
    ):
        """``surprise`` replaces the embedding surprise model; ``lm`` is the language model that LM and
        blend configs need unless every push brings its ``lm_surprise``."""
        self.config = config or SegmentationConfig()
        self.surprise = surprise or make_surprise(self.config.embedding_surprise, self.config.half_life)
        self.lm = (
            None
            if lm is None
            else LanguageModelSurprise(
                lm,
                context_tokens=self.config.lm_context_tokens,
                reduce=self.config.lm_reduce,
                contrast=self.config.lm_score == "pmi",
            )
        )

    # -- public ----------------------------------------------------------------------------------
    def lm_surprises(self, items: Sequence[tuple[SessionState, str]]) -> list[float]:
        """LM surprise of each (session state, text), in order, in one model run: each text is read after
        its state's LM context and the texts of the same state earlier in ``items``. Advances each state's
        context; pass the results to `push` as ``lm_surprise`` in the same order."""
        if self.lm is None:
            raise ValueError(f"surprise={self.config.surprise!r} needs a language model (Segmenter(lm=...))")
        contexts: dict[int, tuple[SessionState, list[int]]] = {}
        requests: list[tuple[list[int], list[int]]] = []
        for state, text in items:
            context = contexts[id(state)][1] if id(state) in contexts else state.lm_context
            tokens = self.lm.tokens(text)
            requests.append((context, tokens))
            contexts[id(state)] = (state, self.lm.extend(context, tokens))
        scores = self.lm.score_tokens(requests)
        for state, context in contexts.values():
            state.lm_context = context
        return [float(s) for s in scores]

    def push(
        self,
        state: SessionState,
        event_id: str,
        ts: float,
        vector: np.ndarray,
        text: str = "",
        *,
        lm_surprise: float | None = None,
    ) -> list[EpisodeChange]:
        """Add one event; returns the episodes opened and sealed because of it, in order.

        LM and blend configs: ``lm_surprise`` from `lm_surprises` (batched), or computed here when omitted.
        """
        if self.config.uses_lm and lm_surprise is None:
            lm_surprise = self.lm_surprises([(state, text)])[0]
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(v))
        if norm > 0.0:
            v = v / np.float32(norm)
        v = v.astype(np.float16).astype(np.float32)  # the precision the state keeps (see the module doc)
        if state.dim == 0:
            state.dim = v.size
            state.vectors = np.zeros((0, v.size), np.float32)
        elif v.size != state.dim:
            raise ValueError(f"vector has {v.size} dimensions, session has {state.dim}")
        changes: list[EpisodeChange] = []
        if self._long_pause(state, float(ts)):  # a new conversation: everything before it is one or more episodes
            state.conversations.append(state.seen - state.conversation_start)
            del state.conversations[:-_CONVERSATIONS_KEPT]
            state.conversation_start = state.seen
            changes.extend(self.flush(state))
        opening = state.open_from == state.seen  # nothing unsealed: this event opens an episode
        if self._multiscale_on:
            state.correlation.add(v, state.vectors[-MAX_LAG:])
            if self.config.reply_cue:
                state.acts.append(is_question(text))
        state.ids.append(str(event_id))
        state.ts.append(float(ts))
        if self.surprise.needs_text:
            state.texts.append(text)
        state.scores.append(math.nan)
        if self.config.uses_lm:
            state.lm.append(math.nan if lm_surprise is None else float(lm_surprise))
        state.vectors = np.concatenate([state.vectors, v[None, :]])
        state.seen += 1
        if self._multiscale_on:
            self._add_scale_values(state)
        if opening:
            state.episode_index += 1
            changes.append(self._opened(state, state.cur_start))
        changes.extend(self._advance(state, final=False))
        self._trim(state)
        return changes

    def flush(self, state: SessionState) -> list[EpisodeChange]:
        """Session end or idle: decide what is left with the look-ahead there is and seal everything.

        The state stays usable: the next push opens a new episode (indices and scores history go on,
        the context starts afresh).
        """
        if state.open_from == state.seen:
            return []
        changes = self._advance(state, final=True)
        if state.armed is not None:  # the session ended while a candidate waited for its peak
            changes.extend(self._open(state, state.armed))
            changes.extend(self._advance(state, final=True))
        changes.append(self._seal(state, state.seen))
        state.cursor = state.cur_start = state.seen
        self._drop_before(state, state.seen)
        state.scale_values, state.scale_from = [], []  # the context starts afresh, and the scales' values with it
        return changes

    @property
    def needs_text(self) -> bool:
        """Whether `push` needs each event's text (a text surprise model, or the reply cue)."""
        return self.surprise.needs_text or (self._multiscale_on and self.config.reply_cue)

    @property
    def _multiscale_on(self) -> bool:
        return self.config.score == "multiscale" and self.config.surprise == "embedding"

    # -- internals -------------------------------------------------------------------------------
    def _long_pause(self, state: SessionState, ts: float) -> bool:
        """Whether the pause before an event at ``ts`` opens a new episode: at least ``gap_s`` seconds and
        ``gap_ratio`` times the session's median pause so far. Records the pause and ``ts``."""
        cfg = self.config
        last, state.last_ts = state.last_ts, ts
        if last is None:
            return False
        gap = ts - last
        typical = float(np.median(state.gaps)) if state.gaps else 0.0
        state.gaps.append(max(gap, 0.0))
        del state.gaps[: -cfg.window]
        return cfg.gap_s > 0.0 and gap >= cfg.gap_s and gap >= cfg.gap_ratio * typical

    def _advance(self, state: SessionState, final: bool) -> list[EpisodeChange]:
        cfg = self.config
        changes: list[EpisodeChange] = []
        while True:
            if state.pending is not None and (final or state.seen >= state.pending + cfg.refine_lag):
                changes.extend(self._refine(state))
            elif state.cursor < state.seen and (final or state.cursor + cfg.ahead <= state.seen):
                changes.extend(self._decide(state, state.cursor, final))
                state.cursor += 1
            else:
                return changes

    def _decide(self, state: SessionState, d: int, final: bool) -> list[EpisodeChange]:
        cfg = self.config
        floor = state.cur_start if cfg.context == "episode" else state.base
        ctx_from = max(floor, d - cfg.max_context)
        if d <= ctx_from:  # no context to be surprising against (an episode's or session's first event)
            return []
        multiscale = cfg.score == "multiscale" and cfg.surprise != "lm"
        known = self._known_scales(state) if self._multiscale_on else None  # once per decision
        if cfg.surprise == "lm":
            score = self._lm_score(state, d)
        elif self._multiscale_on:
            score = self._multiscale(state, d, final, known or cfg.scales)
        elif multiscale:  # the blend's embedding side
            score = self._multiscale_history(state, ctx_from, d, min(d + cfg.ahead, state.seen))
            score = self._blend(state, score, self._lm_score(state, d))
        else:
            score = self._score(state, ctx_from, d, min(d + cfg.ahead, state.seen))
            if cfg.surprise == "blend":
                score = self._blend(state, score, self._lm_score(state, d))
        length = d - state.cur_start
        min_len, peak_wait, trusted = cfg.min_len, cfg.peak_wait, min(cfg.min_len, cfg.ahead)
        if known:  # shorter waits where the session's topics are short
            min_len, peak_wait = min(min_len, min(known)), min(peak_wait, min(known))
            # at a flush, a look-ahead as long as the scales used, on average (one scale alone is noisy)
            trusted = min(math.ceil(float(np.mean(known))), cfg.ahead, cfg.max_context)
        if state.conversations:  # the session's pauses show its episodes' scale: a typical conversation
            min_len = max(min_len, int(np.median(state.conversations)))
        scored = not math.isnan(score)  # an LM event without tokens says nothing
        if self._multiscale_on:  # already a z-score against the session's own values
            outlier = scored and score > cfg.z_threshold
        else:
            outlier = scored and exceeds(score, state.history, cfg.gamma, cfg.warmup)
        # at a flush, a surprise leaves min_len events after it too (the look-ahead there is too short to trust)
        eligible = d + trusted <= state.seen
        surprising = length >= min_len and outlier and eligible
        if surprising and multiscale:  # a peak: no higher score among the min_len events before it
            recent = np.asarray(state.scores[max(d - min_len, state.base) - state.base : d - state.base])
            surprising = not bool((recent[~np.isnan(recent)] >= score).any())
        if scored:
            state.history.append(score)
            del state.history[: -cfg.window]
        state.scores[d - state.base] = score
        if state.armed is not None and eligible and score > state.scores[state.armed - state.base]:
            state.armed = d  # a higher peak of the same surprise
        elif state.armed is None and surprising:
            state.armed = d
        if length >= cfg.max_len:  # cut at the most surprising event that leaves both sides ≤ max_len
            first = max(state.cur_start + cfg.min_len, d + 1 - cfg.max_len)
            last = min(d, state.cur_start + cfg.max_len)
            span = np.asarray(state.scores[first - state.base : last + 1 - state.base])
            boundary = first + int(np.argmax(np.where(np.isnan(span), -np.inf, span)))
        elif state.armed is not None and d - state.armed >= peak_wait:
            boundary = state.armed
        else:
            return []
        return self._open(state, boundary)

    def _open(self, state: SessionState, boundary: int) -> list[EpisodeChange]:
        """A provisional boundary: the episode it opens is announced, the one it closes awaits refinement."""
        changes: list[EpisodeChange] = []
        if state.pending is not None:  # cannot happen with a validated config; keep one pending at most
            changes.extend(self._refine(state))
        state.armed = None
        state.pending = boundary
        state.cur_start = boundary
        state.episode_index += 1
        changes.append(self._opened(state, boundary))
        return changes

    def _scale_widths(self) -> list[int]:
        cfg = self.config
        return [min(scale, cfg.ahead, cfg.max_context) for scale in cfg.scales]

    @staticmethod
    def _block_value(state: SessionState, d: int, w: int, end: int, start: int | None = None) -> float:
        """1 − cos of the summed vectors of the w events before d (from ``start``, default the context's
        start, at most) and of the w events from d on (up to ``end``)."""
        b = state.base
        back = state.vectors[max(b if start is None else start, d - w) - b : d - b].sum(axis=0)
        ahead = state.vectors[d - b : min(end, d + w) - b].sum(axis=0)
        norms = float(np.linalg.norm(back)) * float(np.linalg.norm(ahead))
        return 1.0 - (float(back @ ahead) / norms if norms > 0.0 else 0.0)

    def _add_scale_values(self, state: SessionState) -> None:
        """Each scale's value at the event whose look-ahead block the newest event completes."""
        widths = self._scale_widths()
        if len(state.scale_values) != len(widths):
            state.scale_values, state.scale_from = [[] for _ in widths], [0 for _ in widths]
        for i, w in enumerate(widths):
            d = state.seen - w
            if d <= state.base:  # no event before it in the context
                continue
            if not state.scale_values[i] or state.scale_from[i] + len(state.scale_values[i]) != d:
                state.scale_values[i], state.scale_from[i] = [], d  # (re)start after a gap: buffered events lost
            state.scale_values[i].append(self._block_value(state, d, w, state.seen))

    def _scale_series(self, state: SessionState, i: int, w: int, final: bool) -> tuple[list[float], int]:
        """Scale i's values and the index of the first; at a flush, extended to the session's last event
        with look-ahead blocks cut short by its end."""
        values = list(state.scale_values[i]) if i < len(state.scale_values) else []
        first = state.scale_from[i] if values else state.base + 1
        if final:
            for d in range(max(first + len(values), state.base + 1), state.seen):
                values.append(self._block_value(state, d, w, state.seen))
        return values, first

    def _known_scales(self, state: SessionState) -> tuple[int, ...] | None:
        """The scales the session's correlation length selects; None while it is unknown (no structure
        shows yet) or with ``scale_select="all"``."""
        cfg = self.config
        tau = None if cfg.scale_select == "all" else correlation_length(state.correlation)
        return None if tau is None else select_scales(cfg.scales, tau, *cfg.scale_band)

    def _multiscale(self, state: SessionState, d: int, final: bool, scales: tuple[int, ...]) -> float:
        """Multi-scale boundary score of event d. For each of ``scales`` (those that fit the session's
        correlation length, `models.correlation_length`, else all): the dissimilarity 1 − cos of the mean vectors of the w events
        before d and of the w events from d on, as a robust z-score against that scale's values around d
        (the ``window`` before it and the look-ahead the decision waits for, so a short session has a
        reference from its start). The mean over the scales, plus the reply structure's evidence
        (`models.dialogue_acts`). Short topics are seen at the small scales and long ones at the large
        ones, and noise that only one scale sees is averaged away."""
        cfg = self.config
        widths = self._scale_widths()
        chosen = set(scales)
        zs: list[float] = []
        for i, (scale, w) in enumerate(zip(cfg.scales, widths)):
            cut_short = d - w < state.base or d + w > state.seen  # by the context's start or the session's end
            if scale not in chosen or (cut_short and scale != min(chosen)):
                continue  # a block cut short is less alike than a whole one: not compared
            values, first = self._scale_series(state, i, w, final)
            if not first <= d < first + len(values):
                continue
            lo, hi = max(first, d - cfg.window), min(first + len(values), d + cfg.ahead - w + 1)
            zs.append(_robust_z(values[d - first], values[lo - first : hi - first], cfg.warmup))
        if not zs:
            return math.nan
        score = float(np.max(zs)) if cfg.scale_combine == "max" else float(np.mean(zs))
        if cfg.reply_cue and state.acts:
            lo = max(state.base, d - cfg.max_context)
            acts = state.acts[lo - state.base : min(state.seen, d + cfg.ahead) - state.base]
            score += reply_cue(acts, d - lo)
        return score

    def _multiscale_history(self, state: SessionState, ctx_from: int, d: int, ahead_to: int) -> float:
        """Multi-scale score for the blend: each scale's value at d as a robust z-score against its previous
        ``window`` values in this session, averaged."""
        cfg = self.config
        if len(state.scale_values) != len(cfg.scales):
            state.scale_values, state.scale_from = [[] for _ in cfg.scales], [0 for _ in cfg.scales]
        zs: list[float] = []
        for history, w in zip(state.scale_values, self._scale_widths()):
            value = self._block_value(state, d, w, ahead_to, start=ctx_from)
            zs.append(_robust_z(value, history, cfg.warmup))
            history.append(value)
            del history[: -cfg.window]
        return float(np.max(zs)) if cfg.scale_combine == "max" else float(np.mean(zs))

    def _score(self, state: SessionState, ctx_from: int, d: int, ahead_to: int) -> float:
        """Boundary score of event d: the surprise of events [d, ahead_to) under the context before d,
        minus their surprise under their own distribution ("contrast"), plus the same the other way
        round ("symmetric": a two-sample likelihood ratio of look-back against look-ahead)."""
        b = state.base
        needs_text = self.surprise.needs_text
        back = SurpriseContext(
            state.vectors[ctx_from - b : d - b], tuple(state.texts[ctx_from - b : d - b]) if needs_text else ()
        )
        ahead = SurpriseContext(
            state.vectors[d - b : ahead_to - b], tuple(state.texts[d - b : ahead_to - b]) if needs_text else ()
        )

        m = len(ahead)
        if self.config.score == "surprise":
            return float(np.mean(self.surprise.score(ahead.vectors, ahead.texts, back)))
        # both windows under each window's distribution: two model calls, split afterwards
        both = np.concatenate([ahead.vectors, back.vectors])
        both_texts = (*ahead.texts, *back.texts)
        under_back = self.surprise.score(both, both_texts, back)
        under_ahead = self.surprise.score(both, both_texts, ahead)
        score = float(np.mean(under_back[:m]) - np.mean(under_ahead[:m]))
        if self.config.score == "symmetric":
            score += float(np.mean(under_ahead[m:]) - np.mean(under_back[m:]))
        return score

    def _lm_score(self, state: SessionState, d: int) -> float:
        """Mean LM surprise of events [d, d + lm_window) that have arrived (NaN: none has tokens)."""
        end = min(d + min(self.config.lm_window, self.config.ahead), state.seen)
        window = np.asarray(state.lm[d - state.base : end - state.base])
        window = window[~np.isnan(window)]
        return float(window.mean()) if window.size else math.nan

    def _blend(self, state: SessionState, embedding: float, lm: float) -> float:
        """Both signals standardised against their own previous ``window`` values, then averaged."""
        cfg = self.config
        z_embedding = _standardise(embedding, state.emb_history, cfg.window, cfg.warmup)
        if math.isnan(lm):
            return z_embedding
        z_lm = _standardise(lm, state.lm_history, cfg.window, cfg.warmup)
        return (1.0 - cfg.blend_weight) * z_embedding + cfg.blend_weight * z_lm

    def _refine(self, state: SessionState) -> list[EpisodeChange]:
        cfg = self.config
        b = state.pending
        assert b is not None
        prev_start = state.open_from
        split = b
        if cfg.refine != "none":
            lo = max(prev_start, b - cfg.graph_context)
            hi = min(b + cfg.graph_context, state.seen)
            # both sides stay within max_len: the events decided so far after the split included
            radius = cfg.radius
            known = self._known_scales(state) if self._multiscale_on else None
            if known:  # a boundary moves by less than the smallest block the session uses
                radius = min(radius, min(known) // 2)
            first = max(b - radius, prev_start + cfg.min_len, lo + 1, state.cursor - cfg.max_len)
            # and the episode it opens keeps min_len events where the session has them (at a flush)
            last = min(b + radius, prev_start + cfg.max_len, hi - 1, max(b, state.seen - cfg.min_len))
            if first <= last:
                adj = similarity_graph(state.vectors[lo - state.base : hi - state.base], cfg.sim_floor)
                cands = np.arange(first, last + 1) - lo
                split = lo + best_split(adj, cands, cfg.refine, prefer=b - lo)
        state.pending = None
        state.cur_start = split
        return [self._seal(state, split, index=state.episode_index - 1)]

    def _seal(self, state: SessionState, end: int, index: int | None = None) -> EpisodeChange:
        """Seal the unsealed events before ``end`` as one episode."""
        i, j = state.open_from - state.base, end - state.base
        centroid = state.vectors[i:j].mean(axis=0)
        norm = float(np.linalg.norm(centroid))
        change = EpisodeChange(
            kind="sealed",
            episode_index=state.episode_index if index is None else index,
            event_ids=state.ids[i:j],
            start_ts=state.ts[i],
            end_ts=state.ts[j - 1],
            centroid=(centroid / norm if norm > 0 else centroid).astype(np.float32),
        )
        state.open_from = end
        return change

    def _trim(self, state: SessionState) -> None:
        """Forget events that are sealed and no longer within any future decision's context."""
        keep_from = state.open_from
        if self.config.context == "recent":
            keep_from = min(keep_from, state.cursor - self.config.max_context)
        self._drop_before(state, keep_from)
        if self._multiscale_on:  # a scale's values are kept while a decision to come may look back at them
            for i, values in enumerate(state.scale_values):
                stale = state.cursor - self.config.window - state.scale_from[i]
                if stale > 0 and values:
                    del values[:stale]
                    state.scale_from[i] += stale

    @staticmethod
    def _drop_before(state: SessionState, index: int) -> None:
        n = index - state.base
        if n <= 0:
            return
        del state.ids[:n], state.ts[:n], state.scores[:n]
        if state.texts:
            del state.texts[:n]
        if state.lm:
            del state.lm[:n]
        if state.acts:
            del state.acts[:n]
        state.vectors = state.vectors[n:].copy()
        state.base = index

    def _opened(self, state: SessionState, start: int) -> EpisodeChange:
        i = start - state.base
        return EpisodeChange("opened", state.episode_index, state.ids[i:], state.ts[i], state.ts[-1])


def _robust_z(value: float, reference: Sequence[float], warmup: int) -> float:
    """z = (value − median)/spread of ``reference``, spread = max(1.4826·MAD, std/2) (a reference of mostly
    equal values has MAD 0); 0 with fewer than ``warmup`` values or no spread."""
    if len(reference) < max(warmup, 2):
        return 0.0
    values = np.asarray(reference)
    median = float(np.median(values))
    spread = max(1.4826 * float(np.median(np.abs(values - median))), 0.5 * float(np.std(values)))
    if spread <= 1e-9 * (1.0 + abs(median)):
        return 0.0
    return (value - median) / spread


def _standardise(value: float, history: list[float], window: int, warmup: int) -> float:
    """`_robust_z` of ``value`` against ``history``, compressed to sign(z)·log(1 + |z|): order is kept (a
    candidate still moves to the higher peak) but one huge score cannot swamp the other signal or the
    threshold's history. Appends ``value`` to ``history`` (its latest ``window`` values are kept)."""
    z = _robust_z(value, history, warmup)
    history.append(value)
    del history[:-window]
    return math.copysign(math.log1p(abs(z)), z)
