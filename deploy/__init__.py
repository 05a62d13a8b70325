"""Running memstream: a local Apache Kafka and local worker processes (needs the ``worker`` extra)."""

from memstream._extras import require

require("worker", "memstream.deploy")
