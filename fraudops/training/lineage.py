"""Lineage of a training run: data version (DVC hash or md5) and code version (git commit).

Light on purpose (no MLflow/torch imports): the pipeline's validate and featurize steps use it.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)


def file_md5(path: str | Path) -> str:
    """md5 of a file's bytes (the data version when DVC does not track it)."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_version(path: str | Path) -> dict[str, str]:
    """Lineage of a data file: its DVC hash (``dvc:<md5>``, of the file or of the tracked
    directory holding it) when DVC tracks it, else ``md5:<md5>`` of the bytes; plus the md5."""
    from fraudops.data.versioning import DataVersionError
    from fraudops.data.versioning import data_version as dvc_version

    path = Path(path).resolve()
    md5 = file_md5(path)
    for candidate in (p for p in (path, *path.parents) if p.name):
        try:
            record = dvc_version(candidate)
        except DataVersionError:
            continue
        return {"version": f"dvc:{record.md5}", "dvc_path": str(candidate), "md5": md5}
    return {"version": f"md5:{md5}", "md5": md5}


def git_commit() -> str | None:
    """The checkout's commit, when the code runs from a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
