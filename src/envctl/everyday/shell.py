"""`envctl shell`: an interactive shell in an env, or the activation script for your own shell.

The script comes from py-rattler's activation (the same code pixi uses), so it
knows every shell it knows: bash, zsh, fish, xonsh, PowerShell and cmd.exe,
Windows' `Scripts/` and `Library/bin`, and the env's own activation scripts.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from envctl.core.errors import EnvctlError

SHELLS = ("bash", "zsh", "fish", "xonsh", "powershell", "cmd_exe")


def default_shell() -> str:
    """The user's shell by name ($SHELL; cmd.exe on Windows), among those rattler can activate."""
    if os.name == "nt":
        return "powershell" if os.environ.get("PSModulePath") else "cmd_exe"
    name = Path(os.environ.get("SHELL") or "bash").name
    return name if name in SHELLS else "bash"


def activation_script(prefix: Path, shell: str) -> str:
    """What `conda activate PREFIX` would run in SHELL, from py-rattler."""
    if shell not in SHELLS:
        raise EnvctlError(f"--shell {shell!r}: choose one of {', '.join(SHELLS)}", key="--shell")
    from rattler.shell import ActivationVariables, Shell, activate

    from envctl.core.prefixrule import check_prefix

    check_prefix(str(prefix))  # rattler pastes the prefix into the script: shell syntax there would run

    try:
        result = activate(Path(prefix), ActivationVariables(None, os.environ.get("PATH", "").split(os.pathsep)),
                          getattr(Shell, shell))
    except Exception as exc:  # rattler's own errors: an unreadable activation script, say
        raise EnvctlError(f"cannot activate {prefix}: {exc}") from None
    return result.script


def shell_command(shell: str, prefix: Path, scratch: Path) -> list[str]:
    """The interactive shell to start, activating the env *after* the user's own startup file
    (a ~/.bashrc that puts pyenv or another env first on PATH must not win)."""
    exe = {"cmd_exe": "cmd", "powershell": "pwsh" if shutil.which("pwsh") else "powershell"}.get(shell, shell)
    found = shutil.which(exe)
    if not found:
        raise EnvctlError(f"{exe} is not on PATH", hint="Name another with --shell, or use --print-script.")
    script = activation_script(prefix, shell)
    if shell == "bash":
        rc = scratch / "bashrc"
        rc.write_text('[ -f "$HOME/.bashrc" ] && . "$HOME/.bashrc"\n' + script, encoding="utf-8")
        return [found, "--rcfile", str(rc), "-i"]
    if shell == "zsh":
        (scratch / ".zshrc").write_text('[ -f "$HOME/.zshrc" ] && . "$HOME/.zshrc"\n' + script, encoding="utf-8")
        return [found, "-i"]  # with ZDOTDIR=scratch (see shell_environ)
    if shell == "fish":
        return [found, "-i", "-C", script]
    if shell == "powershell":
        return [found, "-NoExit", "-Command", script]
    if shell == "cmd_exe":
        bat = scratch / "activate.bat"
        bat.write_text(script, encoding="utf-8")
        return [found, "/K", str(bat)]
    return [found, "-i"]


def shell_environ(shell: str, scratch: Path) -> dict[str, str]:
    return {"ZDOTDIR": str(scratch)} if shell == "zsh" else {}


def open_shell(prefix: Path, shell: str) -> int:
    """Start SHELL interactively inside the env at PREFIX; its exit status is returned."""
    import tempfile

    from envctl.everyday.run import run_command

    with tempfile.TemporaryDirectory(prefix="envctl-shell-") as scratch:
        argv = shell_command(shell, prefix, Path(scratch))  # the shell activates the env itself (rattler's script)
        return run_command(argv, {**os.environ, **shell_environ(shell, Path(scratch))}, argv[0])
