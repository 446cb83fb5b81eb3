"""`fraudops serve ...`: run the predictor or the gateway.

Settings come from the environment (``FRAUDOPS_PREDICTOR__*``, ``FRAUDOPS_GATEWAY__*``, ...);
the few options here override them for local use. Heavy imports (kserve, torch, mlflow) happen
inside the commands, never when the CLI loads.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

app = typer.Typer(help="Serve models: the KServe predictor and the HTTP gateway.",
                  no_args_is_help=True)


@app.command()
def predictor(
    port: Annotated[int | None, typer.Option(help="HTTP port (default from settings).")] = None,
    sequence_model_uri: Annotated[str | None, typer.Option(help="Sequence model URI/dir.")] = None,
    autoencoder_model_uri: Annotated[str | None, typer.Option(help="Autoencoder URI/dir.")] = None,
    poll_interval: Annotated[float | None, typer.Option(help="Alias poll seconds; 0 = off.")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda[:N]")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
) -> None:
    """Run the `fraud-scorer` KServe model server (V1 + V2 REST, hot-swaps the champion)."""
    from serving.settings import PredictorServiceSettings

    settings = PredictorServiceSettings()
    overrides = {"http_port": port, "sequence_model_uri": sequence_model_uri,
                 "autoencoder_model_uri": autoencoder_model_uri,
                 "poll_interval_s": poll_interval, "device": device}
    section = settings.predictor.model_copy(
        update={k: v for k, v in overrides.items() if v is not None})
    mlflow = settings.mlflow
    if tracking_uri is not None:
        mlflow = mlflow.model_copy(update={"tracking_uri": tracking_uri})
    settings = settings.model_copy(update={"predictor": section, "mlflow": mlflow})
    # kserve.model_server parses sys.argv when imported; our options are not its options.
    sys.argv = sys.argv[:1]
    from fraudops.models import ModelError
    from serving.exceptions import ServingError
    from serving.server import run

    try:
        run(settings)
    except (ServingError, ModelError) as error:
        typer.secho(f"predictor: {error}", fg="red", err=True)
        raise typer.Exit(2) from error


@app.command()
def gateway(
    port: Annotated[int | None, typer.Option(help="HTTP port (default from settings).")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
) -> None:
    """Run the HTTP gateway (transactions, scoring, alerts, feedback, drift reports)."""
    import uvicorn

    from serving.exceptions import ServingError
    from serving.gateway.app import create_app
    from serving.settings import GatewayServiceSettings

    settings = GatewayServiceSettings()
    overrides = {"port": port, "host": host}
    section = settings.gateway.model_copy(
        update={k: v for k, v in overrides.items() if v is not None})
    settings = settings.model_copy(update={"gateway": section})
    try:
        application = create_app(settings)
    except ServingError as error:
        typer.secho(f"gateway: {error}", fg="red", err=True)
        raise typer.Exit(2) from error
    gateway = settings.gateway
    uvicorn.run(application, host=gateway.host, port=gateway.port,
                log_level=settings.log_level.lower(), access_log=gateway.access_log,
                server_header=False,  # no "server: uvicorn" banner
                timeout_keep_alive=gateway.keep_alive_timeout_s,
                forwarded_allow_ips=gateway.forwarded_allow_ips)


if __name__ == "__main__":  # `python -m serving.cli predictor`, without the root CLI
    from fraudops.cli import configure_logging

    configure_logging()  # as `fraudops serve ...` does: the platform's own INFO lines too
    app()
