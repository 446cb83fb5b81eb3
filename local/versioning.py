"""Version the demo's training data with DVC (run as a child process: DVC is slow to import).

    python -m local.versioning STATE_DIR DATA_FILE

Makes STATE_DIR a DVC repository (no git: the state dir is not a checkout) unless it is one,
and `dvc add`s DATA_FILE, leaving ``DATA_FILE.dvc`` whose md5 the training run logs as the data
version (`fraudops.data.versioning`).
"""

from __future__ import annotations

import sys
from pathlib import Path


def version(root: Path, target: Path) -> str:
    """`dvc add` `target` in the DVC repo at `root` (created if missing); returns the md5."""
    from dvc.repo import Repo

    from fraudops.data.versioning import data_version

    if not (root / ".dvc").is_dir():
        repo = Repo.init(str(root), no_scm=True)
        with repo.config.edit() as config:
            config["core"]["analytics"] = False
    repo = Repo(str(root))
    repo.add(str(target))
    return data_version(target).md5


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m local.versioning STATE_DIR DATA_FILE", file=sys.stderr)
        return 2
    print(version(Path(args[0]), Path(args[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
