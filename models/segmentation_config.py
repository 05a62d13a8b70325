"""The segmenter's knobs (`SegmentationConfig`) and the bounds they imply: the look-ahead before an episode
is sealed, and the most events a `models.session_state.SessionState` holds between pushes.

State bound (`SegmentationConfig.state_bound`): between pushes the state holds at most
``max(max_len + lookahead, max_len + radius + ahead − 1, max_context + ahead − 1)`` events (a
``dim``-float16 vector, id, ts and score each), with ``lookahead = max(ahead + peak_wait,
graph_context) − 1``; with the defaults 64 + 23 = 87 events, ≈ 65 kB at 384-d, plus ``window`` floats of
score history. An episode is sealed once ``lookahead`` events follow its provisional end (or at
`models.segmenter.Segmenter.flush`); episodes hold between ``min_len`` (except a session's last) and
``max_len`` events.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["SegmentationConfig"]


class SegmentationConfig(BaseModel):
    """Knobs of the segmenter. The default score is multi-scale: dyadic block scales 1…16, of which a
    session uses those that fit its own correlation length, each standardised against the session's own
    values around the event, plus the reply structure's cue. So no window length is tuned to one corpus, and
    the waits (min_len, peak_wait) and the refinement radius shrink with the scales a session uses.
    z_threshold, scale_band and the gap rule were checked on the dev sets (Wikipedia, TIAGE train+dev, the
    demo conversation) of bench/eval_segmentation. gamma applies to the other scores; warmup to each scale's
    reference too."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    surprise: Literal["embedding", "lm", "blend"] = Field(
        default="embedding",
        description="boundary signal: embedding surprise (no extra model), token NLL "
        "under a causal LM (models.language_model), or both, standardised and averaged",
    )
    embedding_surprise: Literal["vmf", "cosine", "gaussian"] = Field(
        default="vmf", description="distribution behind embedding surprise (models.surprise.make_surprise)"
    )
    lm_context_tokens: int = Field(
        default=128, ge=0, description="LM surprise: tokens of the session's earlier events an event is read after"
    )
    lm_reduce: Literal["mean", "sum", "max"] = Field(
        default="mean", description="LM surprise of an event from its tokens' NLLs"
    )
    lm_score: Literal["nll", "pmi"] = Field(
        default="pmi",
        description="nll: the text's NLL given the context (EM-LLM); pmi: minus its NLL without "
        "context, so text that is hard in itself is not taken for a change of topic",
    )
    lm_window: int = Field(
        default=4,
        ge=1,
        description="LM surprise of an event: mean over it and the next lm_window − 1 events "
        "(capped at ahead, the events a decision waits for; a change of topic keeps surprising for a few events, "
        "one odd sentence does not)",
    )
    blend_weight: float = Field(default=0.25, ge=0.0, le=1.0, description="blend: weight of the LM signal")
    half_life: float | None = Field(
        default=None, gt=0, description="recency half-life (events) of a context's distribution; None = flat"
    )
    context: Literal["episode", "recent"] = Field(
        default="recent",
        description="what an event is compared with: the current episode so far (EM-LLM), "
        "or the latest max_context events whatever their episode",
    )
    max_context: int = Field(default=16, ge=1, description="at most this many latest events form the context")
    ahead: int = Field(default=16, ge=1, description="look-ahead events whose surprise scores an event")
    score: Literal["surprise", "contrast", "symmetric", "multiscale"] = Field(
        default="multiscale",
        description="surprise: mean NLL of the look-ahead under the context (EM-LLM when "
        "ahead=1); contrast: minus their NLL under their own fit; symmetric: plus the same the other way; "
        "multiscale: block dissimilarity either side of the event at each of the `scales` that fit the session's "
        "correlation length, each a robust z-score against that scale's values around the event, averaged "
        "(embedding surprise only)",
    )
    scales: tuple[int, ...] = Field(
        default=(1, 2, 4, 8, 16),
        description="multiscale: events either side of an event its blocks hold (capped at ahead and max_context)",
    )
    scale_select: Literal["correlation", "all"] = Field(
        default="correlation",
        description="multiscale: use the scales within scale_band times the session's correlation length "
        "(models.correlation_length: how many events its topics' coherence lasts), or all of them",
    )
    scale_band: tuple[float, float] = Field(
        default=(0.5, 2.0),
        description="multiscale, scale_select=correlation: the scales w with low·τ ≤ w ≤ high·τ are used",
    )
    reply_cue: bool = Field(
        default=True,
        description="multiscale: add the reply structure's evidence (models.dialogue_acts: an answer to a "
        "question continues its topic, a fresh question may open one) to the score",
    )
    scale_combine: Literal["mean", "max"] = Field(
        default="mean", description="multiscale: the z-scores of the scales are averaged, or the largest is taken"
    )
    z_threshold: float = Field(
        default=1.25,
        description="multiscale: an event is surprising when its mean robust z-score (plus the reply cue) exceeds this",
    )
    gap_s: float = Field(
        default=1800.0,
        ge=0.0,
        description="an event after a pause of this many seconds or more (and gap_ratio times the session's "
        "median pause) opens a new episode; 0 = off",
    )
    gap_ratio: float = Field(
        default=10.0, ge=1.0, description="a pause must also exceed this many times the session's median pause"
    )
    peak_wait: int = Field(
        default=8,
        ge=0,
        description="a candidate waits this many events for a higher score (0 = first crossing); multiscale: "
        "as many as the smallest scale the session uses, at most this",
    )
    gamma: float = Field(default=1.0, description="threshold = mean + gamma·std of the previous scores")
    window: int = Field(default=64, ge=2, description="how many previous scores the threshold looks at")
    warmup: int = Field(default=4, ge=2, description="no threshold (no surprise boundary) before this many scores")
    min_len: int = Field(
        default=8,
        ge=1,
        description="events an episode holds before a surprise can close it; multiscale: as many as the smallest "
        "scale the session uses, at most this",
    )
    max_len: int = Field(default=64, ge=2, description="an episode is cut when it reaches this many events")
    refine: Literal["modularity", "conductance", "none"] = Field(
        default="modularity", description="boundary refinement objective"
    )
    radius: int = Field(default=2, ge=0, description="a boundary moves at most this many events either way")
    graph_context: int = Field(default=12, ge=1, description="events either side of a boundary in its refinement graph")
    sim_floor: float = Field(default=0.0, description="similarities below this are no edge in the graph")

    @model_validator(mode="after")
    def _check(self) -> SegmentationConfig:
        if self.min_len > self.max_len:
            raise ValueError("min_len must not exceed max_len")
        if self.score == "multiscale" and (not self.scales or min(self.scales) < 1):
            raise ValueError("multiscale needs scales ≥ 1")
        if not 0.0 < self.scale_band[0] <= self.scale_band[1]:
            raise ValueError("scale_band needs 0 < low ≤ high")
        if self.refine != "none":
            if self.graph_context <= self.radius:
                raise ValueError("graph_context must exceed radius")
            if self.max_len <= self.radius:
                raise ValueError("max_len must exceed radius")
            # a boundary is refined before the next can be found: at most one pending at a time
            if self.graph_context > min(self.min_len + self.peak_wait, self.max_len) + self.ahead:
                raise ValueError("graph_context must not exceed min(min_len + peak_wait, max_len) + ahead")
        return self

    @property
    def uses_lm(self) -> bool:
        return self.surprise != "embedding"

    @property
    def refine_lag(self) -> int:
        """Events from a provisional boundary on that its refinement needs (the boundary's included)."""
        return self.graph_context if self.refine != "none" else 1

    @property
    def lookahead(self) -> int:
        """L: events after a provisional boundary needed before the episode it closes is sealed."""
        return max(self.ahead + self.peak_wait, self.refine_lag) - 1

    @property
    def state_bound(self) -> int:
        """Most events (vectors) a `SessionState` holds between pushes.

        Unsealed events: an episode of ≤ max_len plus the lookahead after its provisional end; or, with
        no boundary pending, ≤ max_len (+ radius, when refinement moved the start back) plus the
        ahead − 1 events not decided yet. With ``context="recent"``, also the context of the next decision.
        """
        bound = self.max_len + self.lookahead
        if self.refine != "none":
            bound = max(bound, self.max_len + self.radius + self.ahead - 1)
        if self.context == "recent":
            bound = max(bound, self.max_context + self.ahead - 1)
        return bound
