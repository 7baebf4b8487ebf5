"""Child processes envctl starts: finding uv, a clean environment, dying with envctl."""

from __future__ import annotations

import os
import shutil
import signal

from envctl.core.errors import EnvctlError

# Variables that would make a child python (or uv) look at the host's packages.
_HOST_PYTHON_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONUSERBASE")


def uv_binary(purpose: str = "resolve or install the pip part of the lock") -> str:
    """The uv executable shipped with the `uv` wheel (an envctl dependency), else PATH's."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise EnvctlError(f"cannot {purpose}: uv is not installed",
                      hint="Install it with `pip install uv` (envctl depends on it).")


def without_host_python(environ: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ without what would leak the host's Python into a child's."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k not in _HOST_PYTHON_VARS}


def signal_text(number: int) -> str:
    """'SIGXFSZ (file size limit exceeded)' for a signal number."""
    try:
        sig = signal.Signals(number)
    except ValueError:
        return f"signal {number}"
    return f"{sig.name} ({signal.strsignal(sig) or 'signal'})"


def die_with_parent():
    """A preexec_fn that has the child killed when envctl dies (Linux), else None.

    Without it a create killed with SIGKILL leaves uv running, writing into the
    staging folder while the next create deletes it. prctl is looked up here,
    in the parent: a preexec_fn must not import or allocate after fork.
    """
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def foreign_python_env() -> dict[str, str]:
    """The environment for running another env's python: nothing of the host's Python or conda."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "CONDA_", "VIRTUAL_ENV"))}
    env["PYTHONNOUSERSITE"] = "1"
    return env
