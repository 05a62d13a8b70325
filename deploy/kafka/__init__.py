"""Local Apache Kafka 4.x (KRaft, single node) resolved from Maven Central: ``LocalKafka(...).up()``.

Also runnable as ``python -m memstream.deploy.kafka up|down|status``.
"""

from memstream.deploy.kafka.config import KAFKA_VERSION, default_data_dir, default_port
from memstream.deploy.kafka.errors import KafkaLocalError, KafkaResolveError, KafkaStartError, PortInUseError
from memstream.deploy.kafka.local import KafkaStatus, LocalKafka
from memstream.deploy.kafka.resolve import resolve_jars

__all__ = [
    "KAFKA_VERSION",
    "KafkaLocalError",
    "KafkaResolveError",
    "KafkaStartError",
    "KafkaStatus",
    "LocalKafka",
    "PortInUseError",
    "default_data_dir",
    "default_port",
    "resolve_jars",
]
