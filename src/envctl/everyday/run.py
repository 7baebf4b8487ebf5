"""`envctl run`: a command inside a target's env, as if the env were activated.

No conda is needed. The activation is py-rattler's (as for `envctl shell`, the
code pixi uses): PATH (Windows' `Scripts/` and `Library/bin` too),
CONDA_PREFIX, the env's own variables and its `etc/conda/activate.d` scripts,
sourced in order by bash (cmd.exe's `.bat` scripts on Windows) as conda's
shell hooks source them. That shell only computes the environment: it dumps
it when it ends, and envctl then starts the command itself. So an `exit` in an
activation script ends that shell, never the command: `exit 0` is reported
and the command runs; any other status fails the run before the command
starts, naming the script. The exit status is the command's own (128+N for a
signal, like a shell).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from envctl.core.errors import CommandNotFound, CommandNotRunnable, EnvctlError

# Writes the environment it runs in, with how the activation shell ended, to argv[1] (json).
_DUMP = ("import json, os, sys; d = dict(os.environ); done = d.pop('ENVCTL_ACTIVATION_DONE', '') == '1'; "
         "json.dump({'env': d, 'done': done, 'status': sys.argv[2], 'script': sys.argv[3]}, "
         "open(sys.argv[1], 'w', encoding='utf-8'))")


def _without(parts: list[str], folder: str | None) -> list[str]:
    return [p for p in parts if p and not (folder and os.path.normpath(p) == os.path.normpath(folder))]


def _bin_dirs(prefix: str) -> list[str]:
    if os.name == "nt":
        return [prefix, *(os.path.join(prefix, *d) for d in (("Library", "bin"), ("Scripts",), ("bin",)))]
    return [os.path.join(prefix, "bin")]


def base_environ(prefix: Path, base: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """`base` (default os.environ) ready for activating `prefix`, and the PATH entries to activate onto.

    The previous conda env is kept as conda keeps it (CONDA_PREFIX_<n>); an
    active venv (often envctl's own) is left, or it would win for `pip`, and uv
    installs into $VIRTUAL_ENV before $CONDA_PREFIX.
    """
    env = dict(os.environ if base is None else base)
    prefix_s = str(prefix)
    parts = env.get("PATH", "").split(os.pathsep)
    old = env.get("CONDA_PREFIX")
    for gone in [*(_bin_dirs(old) if old else []), *(_bin_dirs(env.pop("VIRTUAL_ENV")) if "VIRTUAL_ENV" in env else []),
                 *_bin_dirs(prefix_s)]:
        parts = _without(parts, gone)
    try:
        level = int(env.get("CONDA_SHLVL", "0") or 0)
    except ValueError:
        level = 0
    if old and old != prefix_s:
        env[f"CONDA_PREFIX_{level}"] = old  # conda keeps the previous env this way
    env["CONDA_SHLVL"] = str(level)
    env["CONDA_DEFAULT_ENV"] = prefix_s  # what conda sets when activating by path
    env.pop("PYTHONHOME", None)  # would point the env's python at another stdlib
    env.pop("CONDA_PREFIX", None)  # rattler sets it; its deactivation is done above
    return env, parts


@dataclass(frozen=True)
class ActivationShell:
    kind: str  # rattler's Shell name
    argv: list[str]  # runs the script file appended to it
    suffix: str


def _activation_shell() -> ActivationShell:
    if os.name == "nt":
        return ActivationShell("cmd_exe", [os.environ.get("COMSPEC") or "cmd.exe", "/d", "/c"], ".bat")
    bash = shutil.which("bash")
    if bash is None:
        raise EnvctlError("cannot activate the env: bash is not on PATH",
                          hint="Install bash (conda's activation scripts are bash scripts).")
    return ActivationShell("bash", [bash, "--noprofile", "--norc"], ".sh")


def _script(prefix: Path, parts: list[str], shell: ActivationShell, dump: Path) -> str:
    """rattler's activation script, with a dump of the resulting environment however the shell ends."""
    from rattler.shell import ActivationVariables, PathModificationBehavior, Shell, activate

    try:
        result = activate(prefix, ActivationVariables(None, parts, PathModificationBehavior.Replace), getattr(Shell, shell.kind))
    except Exception as exc:  # rattler's own errors: an unreadable activation script, say
        raise EnvctlError(f"cannot activate {prefix}: {exc}") from None
    py = _quote(sys.executable, shell.kind)
    call = f"{py} -I -c {_quote(_DUMP, shell.kind)} {_quote(str(dump), shell.kind)}"
    if shell.kind == "cmd_exe":
        # `exit /b` in a CALLed .bat ends only that script; a bare `exit` ends cmd (no dump: reported as such).
        return result.script + f"\n@SET \"ENVCTL_ACTIVATION_DONE=1\"\n@{call} 0 \"\"\n"
    lines = []
    for line in result.script.splitlines():
        if line.startswith(". "):  # rattler sources each activate.d script this way: remember which one runs
            lines.append(f"__envctl_script={_quote(line[2:].strip(), 'bash')}")
        lines.append(line)
    # The trap runs however the shell ends: at the end, or an `exit` inside a script.
    trap = f'{call} "$?" "${{__envctl_script-}}"'
    return f"__envctl_script=\ntrap {_quote(trap, 'bash')} EXIT\n" + "\n".join(lines) + "\nexport ENVCTL_ACTIVATION_DONE=1\n"


def _quote(text: str, kind: str) -> str:
    if kind == "cmd_exe":
        return '"' + text.replace('"', '""') + '"'
    import shlex

    return shlex.quote(text)


def activated_environ(prefix: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default os.environ) as activating `prefix` leaves it, activation scripts included."""
    env, parts = base_environ(prefix, base)
    shell = _activation_shell()
    with tempfile.TemporaryDirectory(prefix="envctl-activate-") as scratch:
        script, dump = Path(scratch) / f"activate{shell.suffix}", Path(scratch) / "env.json"
        script.write_text(_script(Path(prefix), parts, shell, dump), encoding="utf-8")
        # Activation scripts may print; that goes to envctl's stderr, never into the command's stdout.
        proc = subprocess.run([*shell.argv, str(script)], env=env, stdin=subprocess.DEVNULL, stdout=_stderr_fd(), check=False)
        try:
            dumped = json.loads(dump.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise EnvctlError(f"activating {prefix} ended its {shell.kind} before finishing (exit status {proc.returncode})",
                              hint="An activation script in etc/conda/activate.d called `exit` or `exec`; "
                                   "the command was not run.") from None
    return _checked(prefix, dumped, env)


def _checked(prefix: Path, dumped: dict, env: dict[str, str]) -> dict[str, str]:
    status = str(dumped.get("status", "0"))
    where = dumped.get("script") or "the activation"
    if not dumped.get("done"):
        if status != "0":
            raise EnvctlError(f"activation script {where} exited with status {status}; the command was not run.",
                              hint=f"Fix or remove it ({prefix / 'etc' / 'conda' / 'activate.d'}).")
        print(f"envctl: warning: activation script {where} called `exit 0`; the scripts after it did not run. "
              "Running the command anyway.", file=sys.stderr)
    activated = dict(dumped["env"])
    activated["CONDA_SHLVL"] = str(int(env.get("CONDA_SHLVL", "0")) + 1)
    return activated


def _stderr_fd() -> int | None:
    try:
        return sys.stderr.fileno()
    except (OSError, ValueError, AttributeError):  # replaced by a stream without a descriptor (tests, an API caller)
        return None


def command_line(prefix: Path, command: list[str], env: dict[str, str]) -> list[str]:
    """The command, checked to exist on the activated PATH (a path is taken as is)."""
    if not command:
        raise EnvctlError("no command given: envctl run --target T -- COMMAND [ARGS ...]")
    exe = command[0]
    if os.sep not in exe and (os.altsep is None or os.altsep not in exe):
        found = shutil.which(exe, path=env.get("PATH", ""))
        if found is None:
            raise CommandNotFound(f"command '{exe}' not found in {prefix} or on PATH")
        if os.name == "nt":
            return [found, *command[1:]]  # CreateProcess does not search the child's PATH
    return list(command)


def run_in_env(prefix: Path, command: list[str]) -> int:
    """Run `command` inside the env at `prefix`; return its exit status (128+N when a signal killed it)."""
    if not command:
        command_line(prefix, command, {})
    env = activated_environ(prefix)
    argv = command_line(prefix, command, env)
    sys.stdout.flush()
    sys.stderr.flush()
    return run_command(argv, env, command[0])


def run_command(argv: list[str], env: dict[str, str], name: str) -> int:
    from envctl.core.process import run_foreground

    try:
        return run_foreground(argv, env)
    except OSError as exc:
        raise CommandNotRunnable(f"cannot run {name}: {exc.strerror}") from None
