"""The version of a DVC-tracked data set: the hash DVC records for it.

Training logs `data_version(...)` to MLflow, so every model names the exact bytes it learnt
from; `dvc checkout` of the commit whose ``data.dvc`` holds that hash brings them back. Reading
the hash needs only the ``.dvc`` file (no DVC install); `is_up_to_date` asks DVC itself whether
the workspace still matches it, so a run never logs a version its data no longer has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from fraudops.data.exceptions import DataError


class DataVersionError(DataError):
    """No usable DVC record for the requested data (not tracked, or an unreadable .dvc file)."""


@dataclass(frozen=True)
class DataVersion:
    """What a ``.dvc`` file records about its tracked output."""

    path: str
    md5: str
    size: int | None
    nfiles: int | None

    def as_tags(self, prefix: str = "data") -> dict[str, str]:
        """Flat string tags for MLflow (``data.md5``, ``data.path``, ...)."""
        values = {"md5": self.md5, "path": self.path, "size": self.size, "nfiles": self.nfiles}
        return {f"{prefix}.{k}": str(v) for k, v in values.items() if v is not None}


def dvc_file_for(target: str | Path) -> Path:
    """The ``.dvc`` file of `target`: the path itself if it is one, else ``<target>.dvc``."""
    target = Path(target)
    if target.suffix == ".dvc":
        return target
    return target.with_name(target.name.rstrip("/") + ".dvc")


def data_version(target: str | Path) -> DataVersion:
    """The recorded DVC hash (md5; ``<hash>.dir`` for a directory) of a `dvc add`-ed target."""
    dvc_file = dvc_file_for(target)
    try:
        record = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise DataVersionError(f"{target} is not tracked by DVC: no {dvc_file}") from error
    except yaml.YAMLError as error:
        raise DataVersionError(f"{dvc_file} is not valid YAML: {error}") from error
    outs = record.get("outs") if isinstance(record, dict) else None
    if not outs or not isinstance(outs[0], dict) or not outs[0].get("md5"):
        raise DataVersionError(f"{dvc_file} records no md5 for its output")
    out = outs[0]
    return DataVersion(
        path=str(out.get("path", "")),
        md5=str(out["md5"]),
        size=out.get("size"),
        nfiles=out.get("nfiles"),
    )


def data_hash(target: str | Path) -> str:
    """Shortcut: just the recorded md5 of `target` (what training logs as the data version)."""
    return data_version(target).md5


def is_up_to_date(target: str | Path) -> bool:
    """Whether the workspace copy of `target` still matches its ``.dvc`` record.

    Asks DVC (the ``training`` extra) to re-hash the data; False when it was modified or deleted.
    """
    from dvc.repo import Repo  # heavy, and only in the training extra: import on use

    dvc_file = dvc_file_for(target).resolve()
    with Repo(str(_repo_root(dvc_file.parent))) as repo:
        return not repo.status(targets=[str(dvc_file)])


def _repo_root(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir():
            return folder
    raise DataVersionError(f"no DVC repository (.dvc/) above {start}")
