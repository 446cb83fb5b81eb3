"""`fraudops demo` and `fraudops up`: the embedded local platform, one command each.

The local unit's command line, mounted into `fraudops` through the ``fraudops.cli`` entry points
(pyproject.toml), as every unit's is.

`demo` runs the whole loop (data, training, serving, streaming with drift, retraining, live
model switch) with a live view and a summary; `up` starts the same platform without the
scenario and keeps it running until Ctrl-C. Both stop every process they started on exit,
Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from fraudops.data.drift_scenarios import DRIFTS

if TYPE_CHECKING:
    from local.display import LiveStatus
    from local.platform import LocalPlatform
    from local.timeline import Timeline

# The platform's modules (the Kafka client, the broker binary, ...) are imported inside the commands:
# `fraudops --help` loads this module and should stay fast.

HomeOption = Annotated[Path | None, typer.Option(
    help="State dir (default FRAUDOPS_HOME or .fraudops/demo).")]
KafkaOption = Annotated[str, typer.Option(
    "--kafka", help="Broker: tansu (embedded, in memory, no Java) or apache (Apache Kafka, "
    "fetched from Maven Central on first use; needs Java 17+ and Maven).")]
StagesOption = Annotated[bool | None, typer.Option(
    "--entity-stages/--no-entity-stages",
    help="Merchant and device features from the entity stages (router, merchant, device "
    "processes re-keying the stream through Kafka): right with any number of consumers. "
    "Default: on with --kafka apache, off with tansu (one consumer owns every partition, and "
    "tansu's fetches slow down as topics fill: the stages' extra hops multiply it; see the "
    "README).")]
KAFKA_FLAVOURS = ("tansu", "apache")
EXIT_INCOMPLETE, EXIT_FAILED, EXIT_INTERRUPTED = 1, 2, 130


def demo(
    duration: float = typer.Option(120.0, "--duration", help="Seconds of streaming planned "
                                   "(more while a new model is on its way).", min=10),
    rate: float = typer.Option(200.0, "--rate", help="Transactions per second.", min=1),
    rows: int = typer.Option(60_000, "--rows", help="Training rows to generate.", min=2000),
    drift: str = typer.Option("bust_out_wave", help="Drift switched on half-way: "
                              f"{', '.join(DRIFTS)}."),
    seed: int = typer.Option(7, help="Random seed of the generated data."),
    keep_running: bool = typer.Option(
        False, "--keep-running", help="Keep the platform up after the summary (until Ctrl-C)."),
    home: HomeOption = None,
    clean: bool = typer.Option(True, "--clean/--reuse",
                               help="Start from an empty state dir, or keep what is there."),
    live: bool | None = typer.Option(None, "--live/--plain",
                                     help="Live view (default when on a terminal)."),
    kafka: KafkaOption = "tansu",
    entity_stages: StagesOption = None,
) -> None:
    """Run the whole loop locally: data, training, serving, streaming, drift, retraining."""
    if drift not in DRIFTS:
        raise typer.BadParameter(f"choose one of {', '.join(DRIFTS)}", param_hint="--drift")
    _check_kafka(kafka)
    from local import scenario
    from local.display import LiveStatus
    from local.exceptions import LocalPlatformError
    from local.platform import LocalPlatform
    from local.settings import LocalSettings
    from local.summary import render as render_summary

    _quiet_libraries()
    console = Console()
    options = scenario.DemoOptions(duration_s=duration, rate=rate, rows=rows, drift=drift,
                                   seed=seed)
    settings = LocalSettings()
    state_dir = home or settings.home
    timeline = scenario.timeline()
    status = LiveStatus("fraudops demo", state_dir, timeline)
    code = 0
    with _signals_interrupt():
        try:
            with LocalPlatform(state_dir, clean=clean, timeline=timeline,
                               kafka=kafka, entity_stages=entity_stages) as platform:
                status.processes = platform.processes
                with _view(console, status, live):
                    summary = scenario.DemoRun(options, platform, status).run()
                console.print(render_summary(summary))
                console.print(f"summary written to {state_dir / 'summary.json'}")
                code = _exit_code(timeline)
                if keep_running:
                    _serve_forever(console, platform)
                _stopping(console)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: every process was stopped[/]")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except LocalPlatformError as error:
            console.print(f"[bold red]demo failed:[/] {error}", highlight=False, markup=True)
            console.print(f"process logs: {Path(state_dir) / 'logs'}")
            raise typer.Exit(EXIT_FAILED) from None
    raise typer.Exit(code)


def up(
    rows: int = typer.Option(60_000, "--rows", help="Training rows if no champion exists yet."),
    home: HomeOption = None,
    kafka: KafkaOption = "tansu",
    entity_stages: StagesOption = None,
) -> None:
    """Start the local platform (no scenario) and keep it running until Ctrl-C.

    The MLflow registry and data in the state dir are reused (a previous `demo` leaves a
    champion); without a champion, one is trained first. With tansu (in memory) the decision
    store starts empty, as the topics do; Apache Kafka keeps its topics under the state dir, and
    the store with them.
    """
    _check_kafka(kafka)
    from local.exceptions import LocalPlatformError
    from local.platform import LocalPlatform
    from local.settings import LocalSettings
    from local.timeline import Timeline

    _quiet_libraries()
    console = Console()
    state_dir = home or LocalSettings().home
    timeline = Timeline.of("platform", "training", "serving")
    timeline.listener = _plain_printer(console)
    with _signals_interrupt():
        try:
            with LocalPlatform(state_dir, clean=False, timeline=timeline,
                               kafka=kafka, entity_stages=entity_stages) as platform:
                if kafka == "tansu":  # the topics start empty: so does what was made of them
                    for suffix in ("", "-wal", "-shm"):  # SQLite keeps a journal beside it
                        Path(f"{platform.layout.store_db}{suffix}").unlink(missing_ok=True)
                _bring_up(platform, rows)
                _serve_forever(console, platform)
        except KeyboardInterrupt:
            console.print("[yellow]stopped: every process was stopped[/]")
        except LocalPlatformError as error:
            console.print(f"[bold red]up failed:[/] {error}", highlight=False, markup=True)
            console.print(f"process logs: {Path(state_dir) / 'logs'}")
            raise typer.Exit(EXIT_FAILED) from None


def _check_kafka(kafka: str) -> None:
    if kafka not in KAFKA_FLAVOURS:
        raise typer.BadParameter(f"choose one of {', '.join(KAFKA_FLAVOURS)}",
                                 param_hint="--kafka")


def _bring_up(platform: LocalPlatform, rows: int) -> None:
    """Broker, MLflow, a champion (trained now if missing), then the units."""
    from local import services
    from local.dataset import prepare

    timeline = platform.timeline
    timeline.start("platform")
    platform.start_broker()
    platform.wait_mlflow()
    timeline.done("platform")
    if platform.has_champion():
        timeline.skip("training", f"champion {platform.champion_versions()} found in MLflow")
    else:
        timeline.start("training", "no champion yet: generating data and training once")
        data = prepare(platform.layout.data, rows, 1000)
        platform.run_job(services.version_data(platform.layout, data.train_path), 120)
        platform.run_job(services.training_job(platform.layout, data.train_path), 1800)
        timeline.done("training", f"champion {platform.champion_versions()}")
    timeline.start("serving")
    data_path = platform.layout.data / "transactions.parquet"
    drift = services.drift_watch(platform.layout,
                                 reference_path=data_path if data_path.exists() else None)
    monitor = platform.start_units(drift)
    if monitor is not None:
        platform.supervisor.wait_ready(monitor)
    timeline.done("serving")


def _serve_forever(console: Console, platform: LocalPlatform) -> None:
    """Print the links, then watch the processes until Ctrl-C (or one of them dies)."""
    table = Table(title="fraudops is running (Ctrl-C stops everything)", show_header=False,
                  title_justify="left")
    for name, url in platform.links().items():
        table.add_row(name, url)
    table.add_row("process logs", str(platform.layout.logs))
    console.print(table)
    while True:
        platform.supervisor.check_alive()
        time.sleep(1.0)


def _exit_code(timeline: Timeline) -> int:
    from local.timeline import StepStatus

    failed = [s for s in timeline.steps.values() if s.status is StepStatus.FAILED]
    return EXIT_INCOMPLETE if failed else 0


def _stopping(console: Console) -> None:
    console.print("stopping every process ...")


@contextmanager
def _view(console: Console, status: LiveStatus, live: bool | None) -> Iterator[None]:
    """The live view on a terminal; plain timestamped lines otherwise (CI logs, pipes)."""
    if live is None:
        live = console.is_terminal
    if not live:
        status.timeline.listener = _plain_printer(console)
        yield
        return
    from local.display import render

    with Live(get_renderable=lambda: render(status), console=console, refresh_per_second=4,
              transient=False):
        yield


def _quiet_libraries() -> None:
    """Health checks (httpx) log every request at INFO, and librdkafka (the stream producer)
    warns of every dropped connection, e.g. while the broker starts; those lines would drown
    the view (the units' logs are in files)."""
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("librdkafka").setLevel(logging.ERROR)


def _plain_printer(console: Console) -> Callable[[float, str], None]:
    def show(at: float, text: str) -> None:
        console.print(f"[dim]{time.strftime('%M:%S', time.gmtime(at))}[/] {text}",
                      highlight=False, soft_wrap=True)

    return show


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM (a supervisor, `kill`) stops the platform the same way Ctrl-C does; SIGINT is
    handled even when the launching shell left it ignored (background jobs of a script)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous_term = signal.signal(signal.SIGTERM, interrupt)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
