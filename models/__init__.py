"""The algorithms: pure, typed functions and their configs (needs the ``worker`` extra: numpy, ONNX Runtime…)."""

from memstream._extras import require

require("worker", "memstream.models")
