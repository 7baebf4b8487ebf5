"""The project's `.envctl/` folder: envs (and, in CI, package caches) that must never be committed.

Like uv and virtualenv do for a venv, envctl writes `.envctl/.gitignore`
containing `*` into the folder, so git ignores everything in it in every
project, whatever the project's own `.gitignore` says. It is written when
missing (a folder made by a cache restore or an older envctl gets it too);
its content is never changed afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

from envctl.core.atomic import ensure_inside, write_text_atomic

__all__ = ["STATE_DIR", "GITIGNORE", "ensure_state_dir"]

STATE_DIR = ".envctl"
GITIGNORE = "# Written by envctl: everything here is built or cached, never committed.\n*\n"


def ensure_state_dir(root: Path) -> Path:
    """`root/.envctl`, created if needed, with its `.gitignore`; refused if it leads out of the project."""
    folder = ensure_inside(root, Path(root).absolute() / STATE_DIR, "state folder")
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not os.path.lexists(ignore):
        write_text_atomic(ignore, GITIGNORE)
    return folder
