"""A worker's local table files (RocksDB) mirror changelog topics of one Kafka cluster.

They are a cache: Faust rebuilds them from the changelogs. But files left from another cluster (a local
broker whose storage was formatted again, a worker pointed at a new cluster) hold changelog offsets that
cluster never had, and Faust's recovery stops the worker ("persisted offset … is higher than the last
offset in that topic"). So the state directory records the cluster its tables came from, and tables from
any other cluster are dropped before the worker starts. Other files there (the embedded store) are kept.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

MARK = "kafka-cluster-id"


def bind_to_cluster(state_dir: Path, tabledir: Path, cluster_id: str) -> bool:
    """Record ``cluster_id`` in ``state_dir``; drop ``tabledir`` if it came from another cluster.

    Returns whether tables were dropped. Tables without a record (written before it existed) are kept."""
    mark = state_dir / MARK
    previous = mark.read_text().strip() if mark.exists() else None
    dropped = False
    if previous is not None and previous != cluster_id and tabledir.exists():
        log.warning(
            "local tables in %s came from Kafka cluster %s, the broker now is cluster %s: dropping them "
            "(they are rebuilt from this cluster's changelogs)",
            tabledir,
            previous,
            cluster_id,
        )
        shutil.rmtree(tabledir)
        dropped = True
    if previous != cluster_id:
        state_dir.mkdir(parents=True, exist_ok=True)
        mark.write_text(cluster_id + "\n")
    return dropped
