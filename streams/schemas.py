"""Versioned JSON Schema files generated from the contracts, so any language can publish and read."""

from __future__ import annotations

from pathlib import Path

import orjson
from pydantic import BaseModel

from memstream.streams.contracts import SCHEMA_VERSION, DeadLetter, FeedbackEvent, InteractionEvent, MemoryUpdate

SCHEMA_DIR = Path(__file__).parent / "schemas"
MODELS: dict[str, type[BaseModel]] = {
    "interaction": InteractionEvent,
    "feedback": FeedbackEvent,
    "memory-update": MemoryUpdate,
    "dead-letter": DeadLetter,
}


def schema_files() -> dict[str, bytes]:
    """File name -> JSON Schema bytes for every contract at the current schema version."""
    files: dict[str, bytes] = {}
    for name, model in MODELS.items():
        schema = model.model_json_schema()
        schema["$id"] = f"https://memstream.dev/schemas/v{SCHEMA_VERSION}/{name}.json"
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        files[f"{name}.v{SCHEMA_VERSION}.json"] = orjson.dumps(
            schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
        )
    return files


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, data in schema_files().items():
        path = directory / name
        path.write_bytes(data + b"\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_schemas():
        print(p)
