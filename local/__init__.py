"""The local unit: the whole system as supervised processes on one machine (orchestration).

It starts the deployable units through their command lines and imports none of them, except
monitoring's decision-log contract (`monitoring.decisions`), which the drift watch reads.

- `cli`: ``fraudops demo`` and ``fraudops up``.
- `supervisor`: start processes in their own process groups, wait for readiness, stop them
  (SIGTERM, then SIGKILL after a grace period), one log file each.
- `layout`: the state dir (``FRAUDOPS_HOME``, default ``.fraudops/demo``), fresh ports per run,
  the run lock, and the sweep that leaves no orphan behind.
- `services`: how each part runs — the tansu broker, the MLflow server, and the deployable units
  through their own command lines (``fraudops serve predictor``, ``fraudops consume``, ...),
  configured only through ``FRAUDOPS_*`` variables. The units are never imported here.
- `platform`: `LocalPlatform`, used by ``fraudops up`` and the demo.
- `scenario`, `dataset`, `stream`, `drift_watch`: the scripted demo (``fraudops demo``).
- `display`, `summary`, `probe`, `timeline`: the live view and the end-of-run summary.
"""
