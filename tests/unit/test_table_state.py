"""Local table files are dropped when they came from another Kafka cluster, and only then."""

from __future__ import annotations

from pathlib import Path

from memstream.agents.table_state import MARK, bind_to_cluster


def _tables(state_dir: Path) -> Path:
    tables = state_dir / "v1" / "tables"
    tables.mkdir(parents=True)
    (tables / "t-0.db").write_text("rocksdb")
    (state_dir / "qdrant-edge").mkdir()
    return tables


def test_tables_from_another_cluster_are_dropped_and_the_store_is_kept(tmp_path: Path) -> None:
    tables = _tables(tmp_path)
    assert bind_to_cluster(tmp_path, tables, "cluster-a") is False  # first start: recorded, nothing dropped
    assert (tmp_path / MARK).read_text().strip() == "cluster-a" and tables.exists()
    assert bind_to_cluster(tmp_path, tables, "cluster-a") is False and (tables / "t-0.db").exists()

    assert bind_to_cluster(tmp_path, tables, "cluster-b") is True
    assert not tables.exists() and (tmp_path / "qdrant-edge").exists()
    assert (tmp_path / MARK).read_text().strip() == "cluster-b"


def test_a_fresh_state_dir_is_created_with_its_record(tmp_path: Path) -> None:
    state_dir = tmp_path / "new"
    assert bind_to_cluster(state_dir, state_dir / "v1" / "tables", "c") is False
    assert (state_dir / MARK).read_text().strip() == "c"
