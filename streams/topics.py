"""Topic names, partition counts and keys: the one place they are defined."""

from __future__ import annotations

from dataclasses import dataclass

INTERACTIONS = "interactions"
EMBEDDED = "embedded"
EPISODES = "episodes"
FEEDBACK = "feedback"
MEMORY_UPDATES = "memory-updates"
DEAD_LETTERS = "dead-letters"
ACCESS = "access"
FORGOTTEN = "forgotten"

ALL = (INTERACTIONS, EMBEDDED, EPISODES, FEEDBACK, MEMORY_UPDATES, DEAD_LETTERS)
"""Every topic memstream declares. Keys: `tenant/session` on the interaction path, `tenant/user` on
feedback, `tenant/session` (or `tenant/user`) on memory-updates, the source key on dead-letters."""

CONTROL = (ACCESS, FORGOTTEN)
"""Control topics (``streams/control.py``): compacted, one partition, keyed by record id. ``access``: the API
keys, by key id (``streams/access.py``); ``forgotten``: the forgotten users, by ``tenant/user``
(``streams/forgetting.py``). Created by their own writers and readers, not with the data topics."""


@dataclass(frozen=True)
class TopicNames:
    """Topic names under an optional prefix (one deployment, or one test, per prefix)."""

    prefix: str = "memstream."

    def name(self, base: str) -> str:
        if base not in ALL and base not in CONTROL:
            raise KeyError(f"unknown topic {base!r}")
        return f"{self.prefix}{base}"

    @property
    def interactions(self) -> str:
        return self.name(INTERACTIONS)

    @property
    def embedded(self) -> str:
        return self.name(EMBEDDED)

    @property
    def episodes(self) -> str:
        return self.name(EPISODES)

    @property
    def feedback(self) -> str:
        return self.name(FEEDBACK)

    @property
    def memory_updates(self) -> str:
        return self.name(MEMORY_UPDATES)

    @property
    def dead_letters(self) -> str:
        return self.name(DEAD_LETTERS)

    @property
    def access(self) -> str:
        return self.name(ACCESS)

    @property
    def forgotten(self) -> str:
        return self.name(FORGOTTEN)

    def all(self) -> list[str]:
        return [self.name(base) for base in ALL]
