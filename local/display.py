"""The live view of a local run (rich): steps, processes, the stream, drift, recent events."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from local.probe import StoreSnapshot
from local.stream import StreamProgress
from local.summary import DriftOutcome
from local.supervisor import ManagedProcess, ProcessState
from local.timeline import StepStatus, Timeline

STEP_ICONS = {StepStatus.PENDING: "[dim]·[/]", StepStatus.RUNNING: "[yellow]▶[/]",
              StepStatus.DONE: "[green]✓[/]", StepStatus.FAILED: "[red]✗[/]",
              StepStatus.SKIPPED: "[dim]-[/]"}
PROCESS_STYLES = {ProcessState.STARTING: "yellow", ProcessState.READY: "green",
                  ProcessState.EXITED: "dim", ProcessState.FAILED: "red",
                  ProcessState.STOPPED: "dim", ProcessState.PAUSED: "blue"}
RECENT_EVENTS = 6


@dataclass
class LiveStatus:
    """Everything the live view shows; the run updates it, the view only reads it."""

    title: str
    home: Path
    timeline: Timeline
    processes: list[ManagedProcess] = field(default_factory=list)
    stream: StreamProgress | None = None
    store: StoreSnapshot = field(default_factory=StoreSnapshot)
    served: str | None = None
    drift: DriftOutcome = field(default_factory=DriftOutcome)
    stream_started_at: float | None = None


def render(status: LiveStatus) -> RenderableType:
    """One frame of the live view."""
    header = Text.from_markup(
        f"[bold]{status.title}[/]  {_clock(status.timeline.elapsed_s)} elapsed  "
        f"[dim]state: {status.home}[/]")
    parts: list[RenderableType] = [header, _steps(status.timeline), _processes(status.processes)]
    if status.stream is not None:
        parts.append(_stream(status))
    parts.append(_events(status.timeline))
    return Group(*parts)


def _steps(timeline: Timeline) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 1))
    for step in timeline.steps.values():
        duration = step.duration_s
        table.add_row(STEP_ICONS[step.status], step.name,
                      "" if duration is None else f"{duration:5.1f} s", f"[dim]{step.detail}[/]")
    return table


def _processes(processes: list[ManagedProcess]) -> Table:
    table = Table(title="processes", title_justify="left", box=None, padding=(0, 1))
    for column in ("name", "state", "pid", "where"):
        table.add_column(column, style="bold" if column == "name" else None)
    for process in processes:
        if process.spec.name.startswith("topic-"):
            continue  # one-line jobs; their logs are in the state dir
        style = PROCESS_STYLES[process.state]
        table.add_row(process.name, f"[{style}]{process.state}[/]", str(process.pid),
                      process.spec.url or "")
    return table


def _stream(status: LiveStatus) -> Table:
    stream, store = status.stream, status.store
    assert stream is not None
    table = Table(title="stream", title_justify="left", show_header=False, box=None,
                  padding=(0, 1))
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("sent", Group(ProgressBar(total=max(stream.total, 1), completed=stream.sent,
                                            width=40),
                                Text(f"{stream.sent:,} / {stream.total:,}  "
                                     f"({stream.rate:,.0f} tx/s)")))
    backlog = max(0, stream.sent - store.decided)
    table.add_row("decided", f"{store.decided:,}  (backlog {backlog:,})")
    total = max(1, store.decided)
    table.add_row("decisions", "  ".join(f"{name} {count:,} ({count / total:.1%})"
                                         for name, count in sorted(store.by_decision.items())))
    table.add_row("served model", status.served or "?")
    table.add_row("drift", _drift_line(status))
    return table


def _drift_line(status: LiveStatus) -> str:
    drift, stream = status.drift, status.stream
    parts = []
    if stream is not None and stream.drift_sent_at is not None and status.stream_started_at:
        parts.append(f"switched on in the stream at {stream.drift_sent_at - status.stream_started_at:.0f} s")
    else:
        parts.append("not yet in the stream")
    parts.append(f"{drift.checks} check(s)")
    if drift.detected_at_s is not None:
        parts.append(f"[red]detected at {drift.detected_at_s:.0f} s[/]")
    if drift.retrained:
        parts.append("[green]retrained[/]")
    if drift.switched_at_s is not None:
        parts.append(f"[green]new model live at {drift.switched_at_s:.0f} s[/]")
    return ", ".join(parts)


def _events(timeline: Timeline) -> Table:
    table = Table(title="events", title_justify="left", show_header=False, box=None,
                  padding=(0, 1))
    for at, text in timeline.events[-RECENT_EVENTS:]:
        table.add_row(f"[dim]{_clock(at)}[/]", text)
    return table


def _clock(seconds: float) -> str:
    return time.strftime("%M:%S", time.gmtime(max(0.0, seconds)))
