"""Real English sentences for benchmarks and tests, from the Wikipedia sample in gensim's test data.

The file (106 articles, CC BY-SA) ships inside the gensim wheel; ``models.assets`` fetches and extracts
it once. Wiki markup is stripped with a few regular expressions: good enough for realistic text, not a
full MediaWiki parser.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache

from bench.segmentation_data import WIKI_MEMBER, iter_articles
from memstream.models.assets import GENSIM, asset_path

_COMMENT = re.compile(r"<!--.*?-->", re.S)
_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.S)
_TAG = re.compile(r"<[^>]+>")
_TABLE = re.compile(r"\{\|.*?\|\}", re.S)
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_FILE_LINK = re.compile(
    r"\[\[(?:File|Image|Category|[a-z]{2,3}(?:-[a-z]+)?):[^\[\]]*(?:\[\[[^\]]*\]\][^\[\]]*)*\]\]", re.I
)
_LINK = re.compile(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]")
_EXT_LINK = re.compile(r"\[https?://\S+\s*([^\]]*)\]")
_EMPHASIS = re.compile(r"'{2,}")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z\"'(])")
_BAD_CHARS = re.compile(r"[{}\[\]|=<>_]")
_SPACES = re.compile(r"\s+")


def _strip_markup(text: str) -> str:
    text = _COMMENT.sub(" ", text)
    text = _REF.sub(" ", text)
    text = _TABLE.sub(" ", text)
    for _ in range(5):  # nested templates, innermost first
        text, n = _TEMPLATE.subn(" ", text)
        if not n:
            break
    text = _FILE_LINK.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _EXT_LINK.sub(r"\1", text)
    text = _EMPHASIS.sub("", text)
    text = _TAG.sub(" ", text)
    kept = [
        line
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith(("=", "*", "#", ":", ";", "|", "!", "{", "}"))
    ]
    return "\n".join(kept)


@lru_cache(maxsize=4)
def _all_sentences(min_words: int, max_words: int) -> tuple[str, ...]:
    seen: set[str] = set()
    out: list[str] = []
    for _, article in iter_articles(asset_path(GENSIM, WIKI_MEMBER)):
        for paragraph in _strip_markup(article).splitlines():
            for sentence in _SENTENCE_END.split(paragraph):
                sentence = _SPACES.sub(" ", sentence).strip()
                words = sentence.split(" ")
                if not (min_words <= len(words) <= max_words) or _BAD_CHARS.search(sentence):
                    continue
                if not sentence[0].isupper() or sentence[-1] not in ".!?" or sentence in seen:
                    continue
                seen.add(sentence)
                out.append(sentence)
    return tuple(out)


def wiki_sentences(n: int | None = 2000, *, min_words: int = 8, max_words: int = 40, seed: int = 0) -> list[str]:
    """``n`` distinct Wikipedia sentences of ``min_words``–``max_words`` words, a seeded sample drawn
    across all articles (all of them, in file order, when ``n`` is None)."""
    sentences = list(_all_sentences(min_words, max_words))
    if n is None:
        return sentences
    if n > len(sentences):
        raise ValueError(f"only {len(sentences)} sentences of {min_words}-{max_words} words available, asked {n}")
    return random.Random(seed).sample(sentences, n)
