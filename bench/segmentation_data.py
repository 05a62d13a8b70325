"""Segmentation data: the Wikipedia dev set, the demo conversation, and JSONL sets read from a file.

Wikipedia dev set (`load_dev_set`): real Wikipedia articles cut into sentences, gold boundary at each
``== section ==``.

Source: the gensim 4.4.0 test dump (106 articles, CC BY-SA), fetched from the package registry by
`models.assets`. One stream per article; the lead section opens the stream and every level-2 heading
opens a new gold segment, whose first sentence carries ``boundary=True``. Subheadings (``===``) are not
boundaries. Wiki markup is stripped (templates, refs, tables, files, lists, math), end matter
(References, See also, …) is dropped, and a section left with no sentence merges into the next one.

Demo conversation (`load_demo_set`): the sample session `memstream demo` publishes
(``memstream/cli/samples/conversation.jsonl``), three topics of 8 messages each.

Files (`load_jsonl`): ``{"stream", "text", "boundary"}`` records, optionally with ``ts`` (seconds) and
``role``; or `InteractionEvent` records (``{"type": "event", …}``, as ``locomo-dev.jsonl`` holds them), one
stream per ``user_id`` whose every new ``session_id`` opens a gold segment (control events are skipped).
"""

from __future__ import annotations

import bz2
import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

WIKI_MEMBER = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"

MIN_WORDS = 4  # sentences shorter than this (captions, stubs) are dropped
MIN_RECORDS = 20  # streams shorter than this are dropped
END_MATTER = {
    "references",
    "external links",
    "see also",
    "further reading",
    "notes",
    "bibliography",
    "sources",
    "footnotes",
    "citations",
    "notes and references",
    "works cited",
    "references and notes",
    "other uses",
    "literature",
    "primary sources",
    "secondary sources",
    "general references",
}


class Record(TypedDict, total=False):
    stream: str
    text: str
    boundary: bool
    ts: float  # seconds; absent: the record's position stands in
    role: str


DEMO_SAMPLE = "conversation.jsonl"
DEMO_TOPIC = 8  # the sample's three topics have 8 messages each
CONTROL_KINDS = ("session_end", "session_idle")


def load_demo_set() -> list[Record]:
    """The demo's sample conversation as one stream, gold boundaries at messages 8 and 16."""
    from importlib import resources

    import orjson

    text = resources.files("memstream.cli").joinpath("samples", DEMO_SAMPLE).read_text()
    rows = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    return [
        Record(
            stream="demo",
            text=str(r["text"]),
            boundary=i > 0 and i % DEMO_TOPIC == 0,
            ts=float(r["ts"]),
            role=str(r.get("role", "")),
        )
        for i, r in enumerate(rows)
    ]


HISTORIES = "histories:"  # input prefix: chat histories built from a dialogue set (`load_histories_set`)


def load_histories_set(path: Path, people: int = 40, conversations: int = 10, seed: int = 0) -> list[Record]:
    """Chat histories built from the dialogues of ``path``: each of ``people`` streams is ``conversations``
    dialogues drawn at random (seeded), one after another, turns 20–120 s apart and conversations 3 hours to
    3 days apart. The gold boundaries are the new conversations only, as in a set of people's real chat
    histories: a topic shift inside a conversation is not one."""
    import numpy as np

    dialogues: dict[str, list[Record]] = {}
    for record in load_jsonl(path):
        dialogues.setdefault(record["stream"], []).append(record)
    names = sorted(dialogues)
    rng = np.random.default_rng(seed)
    out: list[Record] = []
    for person in range(people):
        ts = 1.7e9 + 1e7 * person
        picked = rng.choice(len(names), size=min(conversations, len(names)), replace=False)
        for c, index in enumerate(picked):
            for j, record in enumerate(dialogues[names[int(index)]]):
                ts += float(rng.uniform(3 * 3600, 3 * 86400)) if c and not j else float(rng.uniform(20, 120)) * bool(j)
                out.append(Record(stream=f"person{person}", text=record["text"], boundary=c > 0 and j == 0, ts=ts))
    return out


def load_jsonl(path: Path) -> list[Record]:
    """Records of a JSONL file (see the module doc for the two formats), streams contiguous."""
    import orjson

    records: list[Record] = []
    sessions: dict[str, str] = {}  # stream -> its latest session (event format)
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            r = orjson.loads(line)
            if r.get("type") == "question":
                continue
            if r.get("type") == "event" or "session_id" in r:
                if r.get("kind") in CONTROL_KINDS or not str(r.get("text", "")).strip():
                    continue
                stream, session = str(r["user_id"]), str(r["session_id"])
                record = Record(
                    stream=stream, text=str(r["text"]), boundary=stream in sessions and sessions[stream] != session
                )
                sessions[stream] = session
            else:
                record = Record(stream=str(r["stream"]), text=str(r["text"]), boundary=bool(r["boundary"]))
            if r.get("ts") is not None:
                record["ts"] = float(r["ts"])
            role = r.get("role", r.get("speaker"))
            if role is not None:
                record["role"] = str(role)
            records.append(record)
    return records


def load_dev_set(path: Path | None = None) -> list[Record]:
    """All dev records, streams contiguous and in dump order."""
    if path is None:
        from memstream.models.assets import GENSIM, asset_path

        path = asset_path(GENSIM, WIKI_MEMBER)
    records: list[Record] = []
    for title, wikitext in iter_articles(path):
        sections = [s for s in split_sections(wikitext)]
        stream: list[Record] = []
        pending_boundary = False
        for index, (heading, body) in enumerate(sections):
            if heading is not None and heading.lower() in END_MATTER:
                continue
            pending_boundary = pending_boundary or index > 0
            for sentence in split_sentences(strip_markup(body)):
                stream.append(Record(stream=title, text=sentence, boundary=pending_boundary and bool(stream)))
                pending_boundary = False
        if len(stream) >= MIN_RECORDS and sum(r["boundary"] for r in stream) >= 1:
            records.extend(stream)
    return records


def iter_articles(path: Path) -> Iterator[tuple[str, str]]:
    """(title, wikitext) of every main-namespace, non-redirect page of a MediaWiki XML dump (.bz2)."""
    with bz2.open(path, "rb") as fh:
        root = ET.parse(fh).getroot()
    ns = {"m": root.tag.split("}")[0].strip("{")}
    for page in root.findall("m:page", ns):
        if page.find("m:redirect", ns) is not None or (page.findtext("m:ns", "0", ns) != "0"):
            continue
        text = page.findtext("m:revision/m:text", "", ns)
        if text and not text.lstrip().upper().startswith("#REDIRECT"):
            yield page.findtext("m:title", "", ns), text


_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$")


def split_sections(wikitext: str) -> list[tuple[str | None, str]]:
    """[(heading or None for the lead, body)] split at level-2 headings; deeper headings are dropped."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in wikitext.splitlines():
        match = _HEADING.match(line.strip())
        if match:
            if len(match.group(1)) == 2:
                sections.append((strip_markup(match.group(2)).strip(), []))
            continue  # subheadings are not boundaries and not sentences
        sections[-1][1].append(line)
    return [(heading, "\n".join(lines)) for heading, lines in sections]


_COMMENT = re.compile(r"<!--.*?-->", re.S)
_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.S | re.I)
_DROP_TAGS = re.compile(r"<(math|gallery|timeline|imagemap|score|syntaxhighlight|source|chem)\b.*?</\1>", re.S | re.I)
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_TABLE = re.compile(r"\{\|[^{}]*?\|\}", re.S)
_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")
_EXTLINK = re.compile(r"\[(?:https?:)?//[^\s\]]+\s*([^\]]*)\]")
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_DROPPED_NAMESPACES = ("file:", "image:", "category:", "media:", "wikipedia:", "wp:", "help:", "template:")


def _link_text(match: re.Match[str]) -> str:
    inner = match.group(1)
    target = inner.split("|", 1)[0].strip().lower()
    if target.startswith(_DROPPED_NAMESPACES) or re.match(r"^[a-z]{2,3}(-[a-z]+)?:", target):
        return ""  # files, categories, interlanguage links
    return inner.rsplit("|", 1)[-1]


def _innermost(pattern: re.Pattern[str], repl: str | object, text: str) -> str:
    while True:
        new = pattern.sub(repl, text)  # type: ignore[arg-type]
        if new == text:
            return text
        text = new


def strip_markup(text: str) -> str:
    """Plain prose from wikitext: templates, refs, tables, files, lists and markup removed."""
    text = _COMMENT.sub("", text)
    text = _REF.sub("", text)
    text = _DROP_TAGS.sub("", text)
    text = _innermost(_TEMPLATE, "", text)
    text = _innermost(_TABLE, "", text)
    text = _innermost(_LINK, _link_text, text)
    text = _EXTLINK.sub(r"\1", text)
    text = _TAG.sub("", text)
    text = html.unescape(text).replace("\xa0", " ")
    text = text.replace("'''", "").replace("''", "")
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "*#:;|!{}=" or line.startswith("__"):
            continue  # lists, indents, table rows and leftovers are not prose
        lines.append(line)
    text = "\n".join(lines)
    text = re.sub(r"\(\s*[,;]?\s*\)", "", text)  # brackets emptied by template removal
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" ([,.;:])", r"\1", text)
    return text


_ABBREVIATIONS = {
    "e.g",
    "i.e",
    "etc",
    "vs",
    "mr",
    "mrs",
    "ms",
    "dr",
    "st",
    "jr",
    "sr",
    "no",
    "nos",
    "inc",
    "ltd",
    "co",
    "gen",
    "col",
    "lt",
    "sgt",
    "capt",
    "fig",
    "ca",
    "c",
    "approx",
    "u.s",
    "u.k",
    "vol",
    "pp",
    "p",
    "ed",
    "eds",
    "rev",
    "prof",
    "mt",
    "ft",
    "op",
    "cf",
    "al",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "b",
    "d",
    "r",
    "fl",
    "gov",
    "sen",
    "rep",
    "hon",
    "corp",
    "est",
}
_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """Sentences of plain text (rule-based: punctuation + capital, abbreviations and initials kept)."""
    sentences: list[str] = []
    for paragraph in text.split("\n"):
        pieces: list[str] = []
        start = 0
        for match in _SPLIT.finditer(paragraph):
            pieces.append(paragraph[start : match.end()].strip())
            start = match.end()
        pieces.append(paragraph[start:].strip())
        merged: list[str] = []
        for piece in pieces:
            if merged and _ends_with_abbreviation(merged[-1]):
                merged[-1] = merged[-1] + " " + piece
            else:
                merged.append(piece)
        for sentence in merged:
            words = sentence.split()
            if len(words) >= MIN_WORDS and re.search(r"[a-zA-Z]{2}", sentence):
                sentences.append(sentence)
    return sentences


def _ends_with_abbreviation(piece: str) -> bool:
    last = piece.rstrip("\"')] ").split(" ")[-1]
    if not last.endswith("."):
        return False
    word = last[:-1].lstrip("(\"'[").lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def streams(records: list[Record]) -> dict[str, list[Record]]:
    """Records grouped by stream id, order kept."""
    out: dict[str, list[Record]] = {}
    for record in records:
        out.setdefault(record["stream"], []).append(record)
    return out


if __name__ == "__main__":  # quick look: python -m bench.segmentation_data
    recs = load_dev_set()
    by_stream = streams(recs)
    n_b = sum(r["boundary"] for r in recs)
    print(
        f"{len(by_stream)} streams, {len(recs)} records, {n_b} boundaries, "
        f"mean segment {len(recs) / (n_b + len(by_stream)):.1f} records"
    )
