"""The compatibility matrix: loading, field validation, version specs, the project around it."""

from envctl.core.paths import DEFAULT_MATRIX
from envctl.matrix.loader import Matrix, Target, load_matrix
from envctl.matrix.project import Project
from envctl.matrix.versions import Spec, SpecError

__all__ = ["DEFAULT_MATRIX", "Matrix", "Project", "Spec", "SpecError", "Target", "load_matrix"]
