"""The `memstream` command line: every command, registered on one Typer app."""

from __future__ import annotations

from memstream._extras import require

require("worker", "the memstream command line")

import typer  # noqa: E402

from memstream.cli import (  # noqa: E402
    bench,
    bench_embed,
    compensate,
    core,
    demo,
    eval_compensation,
    eval_recall,
    eval_segmentation,
    kafka,
    keys,
    models,
    recall,
    store,
)

app = typer.Typer(help="memstream: streaming memory for AI agents and recommenders.", no_args_is_help=True)
app.command("worker")(core.worker)
app.command("publish")(core.publish)
app.command("tail")(core.tail)
app.command("topics")(core.topics)
app.command("config")(core.config)
app.command("demo")(demo.demo)
app.command("recall")(recall.recall_cmd)
app.command("compensate")(compensate.compensate_cmd)

eval_app = typer.Typer(help="Evaluations on real data (JSON with --json).", no_args_is_help=True)
eval_app.command("compensation")(eval_compensation.eval_compensation)
eval_app.command("segmentation")(eval_segmentation.eval_segmentation)
eval_app.command("recall")(eval_recall.eval_recall)
app.add_typer(eval_app, name="eval")

bench.app.command("embed", context_settings=bench_embed.SETTINGS)(bench_embed.bench_embed)
app.add_typer(bench.app, name="bench")
app.add_typer(models.app, name="models")
app.add_typer(store.app, name="store")
app.add_typer(keys.app, name="keys")
app.add_typer(kafka.app, name="kafka", help="Local Apache Kafka (KRaft, one node) from Maven Central.")
