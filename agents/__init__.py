"""The worker: Faust agents that wire streams, state and stores (needs the ``worker`` extra)."""

from memstream._extras import require

require("worker", "memstream.agents (the worker)")
