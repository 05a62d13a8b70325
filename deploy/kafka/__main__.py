"""``python -m memstream.deploy.kafka up|down|status [--auth] [--data-dir D] [--port P] [--timeout S]`` (no Typer)."""

from __future__ import annotations

import argparse
import json
import sys

from memstream.deploy.kafka.errors import KafkaLocalError
from memstream.deploy.kafka.local import LocalKafka


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run one command; exit 0 on success, 1 on error, 3 for `status` when stopped."""
    parser = argparse.ArgumentParser(prog="python -m memstream.deploy.kafka", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--data-dir", help="broker data dir (env MEMSTREAM_KAFKA_DATA_DIR)")
    parser.add_argument("--port", type=int, help="broker port (env MEMSTREAM_KAFKA_PORT, default 9092)")
    parser.add_argument("--controller-port", type=int, help="KRaft controller port (default port + 1)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for up/down")
    parser.add_argument("--auth", action="store_true", help="the SASL/SCRAM broker with ACLs (own data dir, port 9096)")
    parser.add_argument("--json", action="store_true", help="status as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    kafka = LocalKafka(args.data_dir, args.port, args.controller_port, progress=not args.quiet, auth=args.auth)
    try:
        if args.command == "up":
            print(kafka.up(timeout=args.timeout))
        elif args.command == "down":
            kafka.down(timeout=args.timeout)
        else:
            status = kafka.status()
            print(json.dumps(status.as_dict()) if args.json else "\n".join(status.lines()))
            return 0 if status.running else 3
    except KafkaLocalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
