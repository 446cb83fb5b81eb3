"""Starting the retraining pipeline: a Kubeflow run, a local process, or a Python callable.

    launcher = build_launcher(settings)          # from FRAUDOPS_RETRAIN__LAUNCHER
    launch = launcher.launch(RetrainRequest(...))

`KfpLauncher` starts a run of the pipeline uploaded to Kubeflow (by name, latest version) through
`kfp.Client`, passing only the parameters the pipeline declares. `CommandLauncher` runs a
process (by default the local kfp runner, ``fraudops pipeline run --local``). `EntrypointLauncher`
calls ``module:function`` in this process.
"""

from __future__ import annotations

import importlib
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from fraudops.settings import KfpSettings
from monitoring.exceptions import RetrainLaunchError
from monitoring.settings import RetrainPolicySettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainRequest:
    """Why and on what a retraining run starts."""

    run_name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Launch:
    """What was started: the launcher kind and its handle (a run id or a process id)."""

    launcher: str
    #: The Kubeflow run, or the MLflow run an in-process entry point returned.
    run_id: str | None = None
    detail: str = ""
    #: The process the command launcher started (in a session of its own).
    pid: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class Launcher(Protocol):
    """Something that starts retraining."""

    def launch(self, request: RetrainRequest) -> Launch: ...


class NoLauncher:
    """Retraining switched off: the decision is logged and nothing starts."""

    def launch(self, request: RetrainRequest) -> Launch:
        return Launch("none", detail="retraining launcher disabled")


class KfpLauncher:
    """A run of the uploaded pipeline's latest version in Kubeflow Pipelines."""

    def __init__(self, client: Any, settings: KfpSettings) -> None:
        self.client = client
        self.settings = settings

    def launch(self, request: RetrainRequest) -> Launch:
        try:
            pipeline_id, version = self._latest_version()
            experiment = self.client.create_experiment(
                self.settings.experiment, namespace=self.settings.namespace or None)
            run = self.client.run_pipeline(
                experiment_id=experiment.experiment_id, job_name=request.run_name,
                params=_declared(request.params, version), pipeline_id=pipeline_id,
                version_id=version.pipeline_version_id)
        except RetrainLaunchError:
            raise
        except Exception as error:  # kfp_server_api raises ApiException, urllib3 errors, ...
            raise RetrainLaunchError(f"Kubeflow run not started: {error}") from error
        return Launch("kfp", run.run_id, f"pipeline {self.settings.pipeline_name}, version "
                                         f"{version.pipeline_version_id}")

    def _latest_version(self):
        pipeline_id = self.client.get_pipeline_id(self.settings.pipeline_name)
        if pipeline_id is None:
            raise RetrainLaunchError(f"no pipeline named {self.settings.pipeline_name!r} in "
                                     "Kubeflow; upload it first (fraudops pipeline upload)")
        versions = self.client.list_pipeline_versions(pipeline_id, page_size=1,
                                                      sort_by="created_at desc")
        if not versions.pipeline_versions:
            raise RetrainLaunchError(f"pipeline {self.settings.pipeline_name!r} has no version")
        return pipeline_id, versions.pipeline_versions[0]


def _declared(params: dict[str, Any], version: Any) -> dict[str, Any]:
    """The subset of `params` the pipeline declares (unknown ones would fail the run)."""
    spec = getattr(version, "pipeline_spec", None) or {}
    declared = (spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}))
    dropped = sorted(set(params) - set(declared))
    if dropped:
        log.info("pipeline does not declare %s; not passed", ", ".join(dropped))
    return {k: v for k, v in params.items() if k in declared}


class CommandLauncher:
    """A process: argv + ``--param key=value`` per parameter; waits up to `timeout` s if > 0."""

    def __init__(self, argv: tuple[str, ...], timeout: float = 0.0) -> None:
        if not argv:
            raise RetrainLaunchError("the command launcher needs a command")
        self.argv = list(argv)
        self.timeout = timeout

    def launch(self, request: RetrainRequest) -> Launch:
        argv = self.argv + [a for k, v in request.params.items() for a in ("--param", f"{k}={v}")]
        log.info("starting retraining: %s", " ".join(argv))
        try:
            # The child's stdout goes to our stderr: `drift check --json` keeps a clean stdout.
            process = subprocess.Popen(argv, start_new_session=True, stdout=sys.stderr)
            if self.timeout > 0:
                code = process.wait(self.timeout)
                if code != 0:
                    raise RetrainLaunchError(f"{argv[0]} exited with status {code}")
        except (OSError, subprocess.TimeoutExpired) as error:
            raise RetrainLaunchError(f"cannot run {argv[0]}: {error}") from error
        return Launch("command", detail=" ".join(argv), pid=process.pid)


class EntrypointLauncher:
    """Calls ``module:function(**params)`` in-process (the training helper's entry point)."""

    def __init__(self, target: str | Callable[..., Any]) -> None:
        self.target = target

    def launch(self, request: RetrainRequest) -> Launch:
        function = self.target if callable(self.target) else _import(self.target)
        try:
            outcome = function(**request.params)
        except Exception as error:  # the training code's own errors: logged as a failed launch
            raise RetrainLaunchError(f"retraining failed: {error}") from error
        return Launch("entrypoint", getattr(outcome, "run_id", None), _describe(outcome))


#: Fields of a training outcome worth keeping in the decisions log (the rest is in MLflow).
_OUTCOME_FIELDS = ("promoted", "versions", "decision")


def _describe(outcome: Any) -> str:
    """A short JSON summary of what the entry point returned (its `to_dict()` if it has one)."""
    if hasattr(outcome, "to_dict"):
        body = outcome.to_dict()
        body = {k: body[k] for k in _OUTCOME_FIELDS if k in body} or body
        return json.dumps(body, default=str)[:4000]
    return str(outcome)[:2000]


def _import(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise RetrainLaunchError(f"cannot import retraining entry point {target!r}: "
                                 f"{error}") from error


def build_launcher(policy: RetrainPolicySettings, kfp: KfpSettings,
                   client_factory: Callable[[KfpSettings], Any] | None = None) -> Launcher:
    """The launcher the settings name (the KFP client is created lazily, from `client_factory`)."""
    kind = policy.launcher
    if kind == "auto":
        kind = "kfp" if kfp.host else "command"
    if kind == "kfp":
        return KfpLauncher((client_factory or kfp_client)(kfp), kfp)
    if kind == "command":
        return CommandLauncher(policy.command, policy.wait_timeout_s)
    if kind == "entrypoint":
        if not policy.entrypoint:
            raise RetrainLaunchError("FRAUDOPS_RETRAIN__ENTRYPOINT (module:function) is not set")
        return EntrypointLauncher(policy.entrypoint)
    return NoLauncher()


def kfp_client(settings: KfpSettings) -> Any:
    """A `kfp.Client` for the cluster's pipeline API."""
    if not settings.host:
        raise RetrainLaunchError("FRAUDOPS_KFP__HOST is not set")
    import kfp

    return kfp.Client(host=settings.host, namespace=settings.namespace or "kubeflow")
