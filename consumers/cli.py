"""`fraudops consume`: run the stream consumer (registered through the fraudops.cli entry point)."""

from __future__ import annotations

import logging

import typer

from consumers.app import ConsumerApp, HeapFreezer
from consumers.settings import ConsumerSettings
from consumers.stages import STAGES, StageApp


def consume(
    group_id: str | None = typer.Option(None, help="Consumer group (FRAUDOPS_CONSUMER__GROUP_ID)."),
    predictor_url: str | None = typer.Option(
        None, help="Predictor base URL (FRAUDOPS_CONSUMER__PREDICTOR_URL)."),
    batch_size: int | None = typer.Option(None, help="Micro-batch size (CONSUMER__BATCH_SIZE)."),
    metrics_port: int | None = typer.Option(
        None, help="Prometheus port, 0 = off (FRAUDOPS_CONSUMER__METRICS_PORT)."),
    stage: str | None = typer.Option(
        None, help=f"Run an entity stage instead of the scoring consumer: {', '.join(STAGES)} "
                   "(see FRAUDOPS_CONSUMER__ENTITY_STAGES)."),
) -> None:
    """Score the transactions stream: decisions, alerts, notifications, analyst labels."""
    settings = ConsumerSettings()
    for chatty in ("librdkafka", "httpx"):  # per-connection / per-request INFO lines
        logging.getLogger(chatty).setLevel(logging.WARNING)
    overrides = {name: value for name, value in (
        ("group_id", group_id), ("predictor_url", predictor_url), ("batch_size", batch_size),
        ("metrics_port", metrics_port)) if value is not None}
    if overrides:
        section = settings.consumer.model_copy(update=overrides)
        settings = settings.model_copy(update={"consumer": section})
    if stage is not None:
        if stage not in STAGES:
            raise typer.BadParameter(f"one of {', '.join(STAGES)}", param_hint="--stage")
        app = StageApp(settings, stage)
    else:
        app = ConsumerApp(settings, heap=HeapFreezer())
    if settings.consumer.metrics_port:
        app.metrics.serve(settings.consumer.metrics_port)
    app.install_signal_handlers()
    raise typer.Exit(app.run())
