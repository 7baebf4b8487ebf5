"""`envctl run`: a command inside a target's env, as if the env were activated.

No conda is needed: we set what `conda activate <prefix>` sets (PATH with
<prefix>/bin first, CONDA_PREFIX, CONDA_DEFAULT_ENV, CONDA_SHLVL and the
CONDA_PREFIX_<n> stack) and, only when the env ships
`etc/conda/activate.d/*.sh` scripts, source them in bash before exec'ing the
command, as conda's shell hooks would. The exit status is the command's own
(128+N for a signal, like a shell).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from envctl.core.errors import EnvctlError

# Sources every activation script in order, then replaces itself with the command.
_ACTIVATE = 'for f in "$ENVCTL_ACTIVATE_D"/*.sh; do . "$f" || exit 1; done; unset ENVCTL_ACTIVATE_D; exec "$@"'


def _without(path_value: str, folder: str | None) -> list[str]:
    parts = [p for p in path_value.split(os.pathsep) if p]
    return [p for p in parts if not folder or os.path.normpath(p) != os.path.normpath(folder)]


def activated_environ(prefix: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default os.environ) as `conda activate <prefix>` would leave it."""
    env = dict(os.environ if base is None else base)
    prefix_s = str(prefix)
    old = env.get("CONDA_PREFIX")
    parts = _without(env.get("PATH", ""), os.path.join(old, "bin") if old else None)
    # An active venv (often envctl's own) would otherwise win for `pip`, and
    # uv installs into $VIRTUAL_ENV before $CONDA_PREFIX.
    venv = env.pop("VIRTUAL_ENV", None)
    if venv:
        parts = _without(os.pathsep.join(parts), os.path.join(venv, "bin"))
    parts = _without(os.pathsep.join(parts), os.path.join(prefix_s, "bin"))
    env["PATH"] = os.pathsep.join([os.path.join(prefix_s, "bin"), *parts])
    try:
        level = int(env.get("CONDA_SHLVL", "0") or 0)
    except ValueError:
        level = 0
    if old and old != prefix_s:
        env[f"CONDA_PREFIX_{level}"] = old  # conda keeps the previous env this way
    env["CONDA_SHLVL"] = str(level + 1)
    env["CONDA_PREFIX"] = prefix_s
    env["CONDA_DEFAULT_ENV"] = prefix_s  # what conda sets when activating by path
    env.pop("PYTHONHOME", None)  # would point the env's python at another stdlib
    return env


def activation_scripts(prefix: Path) -> list[Path]:
    return sorted((prefix / "etc" / "conda" / "activate.d").glob("*.sh"))


def command_line(prefix: Path, command: list[str], env: dict[str, str]) -> list[str]:
    """What to exec: the command itself, or bash sourcing the activation scripts first."""
    if not command:
        raise EnvctlError("no command given: envctl run --target T -- COMMAND [ARGS ...]")
    exe = command[0]
    if os.sep not in exe and shutil.which(exe, path=env["PATH"]) is None:
        raise EnvctlError(f"command '{exe}' not found in {prefix / 'bin'} or on PATH", exit_code=127)
    if not activation_scripts(prefix):
        return list(command)
    bash = shutil.which("bash", path=env["PATH"])
    if bash is None:
        raise EnvctlError(f"{prefix} has activation scripts (etc/conda/activate.d/*.sh) but there is no bash to run them")
    env["ENVCTL_ACTIVATE_D"] = str(prefix / "etc" / "conda" / "activate.d")
    return [bash, "-c", _ACTIVATE, "envctl-run", *command]


# Signals envctl passes on to the command. A terminal's Ctrl-C (or hangup) already
# reaches the command, which shares envctl's process group: only signals sent to
# envctl by kill() (si_code <= 0: SI_USER, SI_QUEUE, SI_TKILL) are forwarded.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_RESET = (*FORWARDED, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


def _child_defaults() -> None:
    """In the child, before exec: default dispositions and no blocked signals, whatever envctl had."""
    for signum in _RESET:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def run_in_env(prefix: Path, command: list[str]) -> int:
    """Run `command` inside the env at `prefix`; return its exit status (128+N when a signal killed it)."""
    env = activated_environ(prefix)
    argv = command_line(prefix, command, env)
    sys.stdout.flush()
    sys.stderr.flush()
    if not _main_thread():  # an API caller's thread cannot own signals; the child still gets defaults
        proc = _start(argv, env, command)
        return _status(proc.wait())
    watched = {*FORWARDED, signal.SIGCHLD}
    # Blocked, then taken synchronously with sigtimedwait: no handler can run between
    # the child's start and the wait, and nothing is lost while the child starts.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        proc = _start(argv, env, command)
        while proc.poll() is None:
            info = signal.sigtimedwait(watched, 0.5)
            if info is not None and info.si_signo != signal.SIGCHLD and info.si_code <= 0 and proc.poll() is None:
                proc.send_signal(info.si_signo)
        while signal.sigtimedwait(watched, 0) is not None:  # drain: nothing pending may fire after the child is gone
            pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return _status(proc.returncode)


def _start(argv: list[str], env: dict[str, str], command: list[str]) -> subprocess.Popen:
    try:
        return subprocess.Popen(argv, env=env, preexec_fn=_child_defaults)  # noqa: PLW1509 - envctl run is single-threaded
    except OSError as exc:
        raise EnvctlError(f"cannot run {command[0]}: {exc.strerror}", exit_code=126) from None


def _status(code: int) -> int:
    return code if code >= 0 else 128 - code


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
