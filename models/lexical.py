"""Sparse lexical vectors for hybrid search: BM25 term weights whose IDF the store applies at query time.

Text is normalised and split by the ``tokenizers`` library (BERT's normaliser: lower case, accents
stripped; BERT's pre-tokeniser: words and punctuation apart), punctuation is dropped and every word is
stemmed by Snowball (PyStemmer), so "researching" finds "research". A term's id is a stable 32-bit hash
of its stem: no vocabulary to keep or ship, the same id in every process and after every restart.

A document's weight for a term is BM25's saturating term frequency ``tf·(k1+1)/(tf+k1)`` with no length
normalisation (``b = 0``): it needs no corpus statistic at write time (a stream has no final average
length), and on the LoCoMo dev set it was as good as or better than ``b = 0.75`` with the true average.
The store multiplies by the term's IDF over everything it holds (Qdrant's IDF modifier), so weights
written today stay right as the corpus grows. A query's weight is the term's count in the query.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from pydantic import BaseModel, Field

__all__ = ["LexicalConfig", "LexicalEncoder", "SparseVector", "add_sparse"]


class LexicalConfig(BaseModel):
    """How text becomes a sparse vector (nested in the recall settings)."""

    language: str = Field("english", description="Snowball stemmer language (PyStemmer's algorithm names)")
    k1: float = Field(1.2, gt=0, description="BM25 term-frequency saturation")
    max_terms: int = Field(4096, ge=1, description="Distinct terms kept per text (the most frequent first)")


@dataclass(frozen=True, slots=True)
class SparseVector:
    """Term ids (sorted, unique, < 2**32) and their weights."""

    indices: tuple[int, ...] = ()
    values: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.values):
            raise ValueError("a sparse vector needs as many values as indices")

    def __len__(self) -> int:
        return len(self.indices)

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self.indices, self.values))

    @classmethod
    def from_dict(cls, weights: dict[int, float]) -> SparseVector:
        items = sorted((int(k), float(v)) for k, v in weights.items() if v != 0.0)
        return cls(tuple(k for k, _ in items), tuple(v for _, v in items))

    def scaled(self, factor: float) -> SparseVector:
        return SparseVector(self.indices, tuple(v * factor for v in self.values))


def add_sparse(vectors: list[SparseVector], weights: list[float]) -> SparseVector:
    """``Σ weights[i] · vectors[i]`` as one sparse vector."""
    total: dict[int, float] = {}
    for vector, weight in zip(vectors, weights, strict=True):
        for index, value in zip(vector.indices, vector.values):
            total[index] = total.get(index, 0.0) + weight * value
    return SparseVector.from_dict(total)


def _term_id(term: str) -> int:
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "little")


@dataclass
class LexicalEncoder:
    """Text → terms → sparse vector. Thread-safe; one instance serves every stage."""

    config: LexicalConfig = field(default_factory=LexicalConfig)

    def __post_init__(self) -> None:
        import Stemmer
        from tokenizers import normalizers, pre_tokenizers

        try:
            self._stemmer = Stemmer.Stemmer(self.config.language)
        except KeyError:
            raise ValueError(
                f"unknown stemmer language {self.config.language!r}; one of {', '.join(Stemmer.algorithms())}"
            ) from None
        self._normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True
        )
        self._pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        self._term_id = lru_cache(maxsize=65_536)(_term_id)
        # an event's text is encoded when it is written and again when its episode is sealed, at most a
        # bounded open episode later (77 events of its session; 4,096 covers ~50 busy sessions): the second
        # time comes from here. Texts are at most worker.max_text_chars (16 kB): 64 MB in the worst case.
        self._cached_document = lru_cache(maxsize=4_096)(self._document)

    def terms(self, text: str) -> list[str]:
        """The stemmed words of ``text``, in order (punctuation dropped)."""
        normalised = self._normalizer.normalize_str(text)
        words = [w for w, _ in self._pre_tokenizer.pre_tokenize_str(normalised) if any(c.isalnum() for c in w)]
        stems: list[str] = self._stemmer.stemWords(words)  # PyStemmer is untyped
        return stems

    def _counts(self, text: str) -> Counter[int]:
        counts = Counter(self._term_id(t) for t in self.terms(text))
        if len(counts) > self.config.max_terms:
            counts = Counter(dict(counts.most_common(self.config.max_terms)))
        return counts

    def document(self, text: str) -> SparseVector:
        """BM25 document weights (b = 0) of ``text``: the store's IDF modifier completes the score."""
        return self._cached_document(text)

    def _document(self, text: str) -> SparseVector:
        k1 = self.config.k1
        return SparseVector.from_dict({t: tf * (k1 + 1.0) / (tf + k1) for t, tf in self._counts(text).items()})

    def query(self, text: str) -> SparseVector:
        """Query weights: each term's count (a repeated word counts more, as in BM25)."""
        return SparseVector.from_dict({t: float(c) for t, c in self._counts(text).items()})
