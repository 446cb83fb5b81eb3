"""`fraudops pipeline compile | run --local | submit | upload | schedule`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fraudops.settings import PIPELINE_IMAGE
from pipelines.pipeline import build_pipeline

log = logging.getLogger(__name__)
console = Console(stderr=True)
app = typer.Typer(help="The Kubeflow training pipeline.", no_args_is_help=True)
#: Where the committed IR lives (a test checks it matches the source).
COMPILED = Path(__file__).resolve().parent / "compiled" / "training_pipeline.yaml"

Params = Annotated[list[str] | None, typer.Option(
    "--param", help="Pipeline parameter NAME=VALUE (repeatable), e.g. data_path=...")]


def parse_params(items: list[str] | None) -> dict[str, str]:
    """NAME=VALUE strings to a dict; a clear error for anything else."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--param")
        out[name.strip()] = value
    return out


def declared_only(params: dict[str, str]) -> dict[str, str]:
    """The parameters the pipeline declares; others (a trigger's context such as
    ``trigger_reason``) are logged and dropped instead of failing the run."""
    declared = set(build_pipeline().component_spec.inputs or {})
    ignored = sorted(set(params) - declared)
    if ignored:
        log.info("ignoring parameters the pipeline does not declare: %s", ", ".join(ignored))
    return {k: v for k, v in params.items() if k in declared}


def compile_pipeline(out: Path, image: str = PIPELINE_IMAGE,
                     env: dict[str, str] | None = None) -> Path:
    """Write the pipeline's IR YAML (what the Kubeflow UI uploads)."""
    from kfp import compiler

    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(image, env), str(out))
    return out


def _settings():
    from pipelines.settings import PipelineSettings

    return PipelineSettings()


@app.command("compile")
def compile_command(
    out: Annotated[Path, typer.Option(help="Output YAML.")] = COMPILED,
    image: Annotated[str | None, typer.Option(help="Component image (FRAUDOPS_KFP__IMAGE).")]
    = None,
) -> None:
    """Compile the pipeline to Kubeflow's IR YAML."""
    settings = _settings()
    path = compile_pipeline(out, image or settings.kfp.image, settings.task_env())
    console.print(f"pipeline compiled to {path}")


@app.command("run")
def run_command(
    params: Params = None,
    local: Annotated[bool, typer.Option("--local", help="Run offline with kfp.local.")] = False,
    pipeline_root: Annotated[Path | None, typer.Option(help="kfp.local output root.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the outcome JSON.")]
    = None,
) -> None:
    """Run the whole pipeline here (kfp.local, each step a subprocess of this environment)."""
    if not local:
        raise typer.BadParameter("only --local runs here; use `submit` for a cluster")
    from pipelines.local import run_local

    settings = _settings()
    values = declared_only(parse_params(params))
    if "data_path" not in values:
        raise typer.BadParameter("--param data_path=PATH is required", param_hint="--param")
    try:
        outcome = run_local(values, pipeline_root or settings.resolved_pipeline_root(),
                            settings.kfp.image)
    except Exception as error:  # kfp.local raises RuntimeError naming the failed task
        console.print(f"[red]pipeline failed:[/red] {error}")
        raise typer.Exit(code=1) from error
    summary = outcome.to_dict()
    console.print(f"promoted: {outcome.promoted}; versions {summary['versions']}; "
                  f"{outcome.decision.reason if outcome.decision else ''}")
    if json_out:
        json_out.write_text(json.dumps(summary, indent=2, default=str))
    typer.echo(json.dumps({k: summary[k] for k in ("promoted", "versions", "decision")},
                          default=str))


def _client(host: str | None):
    import kfp

    settings = _settings()
    return kfp.Client(host=host or settings.kfp.host or None,
                      namespace=settings.kfp.namespace or None), settings


def cluster_arguments(settings, params: dict[str, str]) -> dict[str, object]:
    """Run parameters for a cluster: deploy to KServe unless the caller says otherwise."""
    defaults: dict[str, object] = {"deploy_mode": "kserve",
                                   "predictor_name": settings.kfp.predictor_name,
                                   "predictor_namespace": settings.kfp.predictor_namespace,
                                   "canary_percent": settings.kfp.canary_percent}
    return {**defaults, **params}


@app.command("submit")
def submit_command(
    params: Params = None,
    host: Annotated[str | None, typer.Option(help="KFP endpoint (FRAUDOPS_KFP__HOST).")] = None,
    run_name: Annotated[str | None, typer.Option(help="Run name.")] = None,
) -> None:
    """Submit a run of the pipeline to a Kubeflow Pipelines endpoint."""
    client, settings = _client(host)
    run = client.create_run_from_pipeline_func(
        build_pipeline(settings.kfp.image, settings.task_env()),
        arguments=cluster_arguments(settings, declared_only(parse_params(params))),
        run_name=run_name, experiment_name=settings.kfp.experiment,
        namespace=settings.kfp.namespace or None)
    typer.echo(json.dumps({"run_id": run.run_id}))


@app.command("upload")
def upload_command(
    package: Annotated[Path, typer.Option(help="Compiled pipeline YAML.")] = COMPILED,
    host: Annotated[str | None, typer.Option(help="KFP endpoint (FRAUDOPS_KFP__HOST).")] = None,
    version: Annotated[str | None, typer.Option(help="Version name (default: package ver).")]
    = None,
) -> None:
    """Upload the compiled pipeline (a new version if it exists) so it shows in the UI."""
    from fraudops import __version__

    client, settings = _client(host)
    name = settings.kfp.pipeline_name
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        uploaded = client.upload_pipeline(str(package), pipeline_name=name,
                                          namespace=settings.kfp.namespace or None)
        typer.echo(json.dumps({"pipeline_id": uploaded.pipeline_id}))
        return
    label = version or f"{__version__}-{package.stat().st_mtime_ns}"
    uploaded = client.upload_pipeline_version(str(package), pipeline_version_name=label,
                                              pipeline_id=pipeline_id)
    typer.echo(json.dumps({"pipeline_id": pipeline_id,
                           "version_id": uploaded.pipeline_version_id}))


@app.command("schedule")
def schedule_command(
    params: Params = None,
    host: Annotated[str | None, typer.Option(help="KFP endpoint (FRAUDOPS_KFP__HOST).")] = None,
    cron: Annotated[str | None, typer.Option(help="6-field cron (FRAUDOPS_KFP__CRON).")] = None,
) -> None:
    """Create (or replace) the recurring run of the uploaded pipeline's latest version.

    Idempotent: an earlier recurring run of the same name is deleted first, so running this on
    every install or upgrade (the chart does) keeps exactly one schedule.
    """
    client, settings = _client(host)
    pipeline_id = client.get_pipeline_id(settings.kfp.pipeline_name)
    if pipeline_id is None:
        console.print(f"[red]pipeline {settings.kfp.pipeline_name!r} is not uploaded[/red]")
        raise typer.Exit(code=1)
    versions = client.list_pipeline_versions(pipeline_id, sort_by="created_at desc", page_size=1)
    experiment = client.create_experiment(settings.kfp.experiment,
                                          namespace=settings.kfp.namespace or None)
    name = f"{settings.kfp.pipeline_name}-scheduled"
    replaced = _delete_recurring_runs(client, experiment.experiment_id, name)
    job = client.create_recurring_run(
        experiment.experiment_id, name,
        cron_expression=cron or settings.kfp.cron, pipeline_id=pipeline_id,
        version_id=versions.pipeline_versions[0].pipeline_version_id,
        params=cluster_arguments(settings, declared_only(parse_params(params))),
        enable_caching=False)
    typer.echo(json.dumps({"recurring_run_id": job.recurring_run_id, "replaced": replaced}))


def _delete_recurring_runs(client, experiment_id: str, name: str) -> list[str]:
    """Delete the experiment's recurring runs called `name`; return their ids."""
    deleted, token = [], ""
    while True:
        page = client.list_recurring_runs(page_token=token, page_size=100,
                                          experiment_id=experiment_id)
        for job in page.recurring_runs or []:
            if job.display_name == name:
                client.delete_recurring_run(job.recurring_run_id)
                deleted.append(job.recurring_run_id)
        token = page.next_page_token
        if not token:
            return deleted
