"""A project: its matrix, loaded once, and the folder its stages write into.

Every command builds one Project and hands its Targets down the stages, so
the matrix is parsed once per command, not once per stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from envctl.core.paths import project_root
from envctl.matrix.loader import Matrix, Target, load_matrix


@dataclass(frozen=True)
class Project:
    matrix_path: Path
    root: Path
    matrix: Matrix

    @classmethod
    def load(cls, matrix_path: Path) -> "Project":
        return cls(Path(matrix_path), project_root(matrix_path), load_matrix(matrix_path))

    def select(self, names: list[str] | None, all_targets: bool = False) -> list[Target]:
        return self.matrix.select(names, all_targets)

    def target(self, name: str) -> Target:
        (target,) = self.matrix.select([name])
        return target
