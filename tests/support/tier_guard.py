"""What the fast tier (`pytest -m "not slow"`) must not do, caught wherever it happens.

Heavy work is recognised at its lowest entry points, not at envctl's public functions,
so no road around them goes unseen:

- an env is built (by `create`, by `pack`, by a fixture): every build links conda
  packages with `rattler.install`, and installs a pip part with `uv pip install`;
- a certification runs: the smoke runner is launched (`python -I .../smoke/runner.py`),
  or a model is exported in this process (`torch.onnx.export`);
- a bundle is packed: `pack` materialises its env with `rattler.install`.

The same hooks run in this process and in its children, however deep: a child that runs
this interpreter again (`python -m envctl ...`) or is given a PYTHONPATH, launched while the
guard is on, gets `tier_guard_site/` on its PYTHONPATH, whose `sitecustomize` installs these
hooks there.
Each hook appends a line to the file named by `ENVCTL_TEST_HEAVY_LOG`; the conftest
sets that variable for each phase (setup, call, teardown) of each test not marked
slow and fails the phase whose log is not empty.

Standard library only: the children load this file by path.
"""

from __future__ import annotations

import functools
import os
import sys

LOG_VAR = "ENVCTL_TEST_HEAVY_LOG"
SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tier_guard_site")
_RUNNER = os.path.join("smoke", "runner.py")  # envctl's smoke runner, by path (src/envctl/smoke/runner.py)


def record(what: str) -> None:
    """Note heavy work in the current test's log (no-op while no fast test runs)."""
    log = os.environ.get(LOG_VAR)
    if not log:
        return
    try:
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"{what} [pid {os.getpid()}]\n")
    except OSError:
        pass


def _heavy_command(argv: list[str]) -> str | None:
    """What a child command does that the fast tier must not, or None."""
    names = [os.path.basename(a) for a in argv]
    if any(a.endswith(_RUNNER) for a in argv):
        return "runs a certification (the smoke runner): " + " ".join(argv)[:300]
    if names and names[0] in ("uv", "uv.exe") and argv[1:3] == ["pip", "install"]:
        return "builds an env (uv pip install): " + " ".join(argv)[:300]
    if "-m" in argv and argv[argv.index("-m") + 1:argv.index("-m") + 3] == ["pip", "install"] and "--dry-run" not in argv:
        return "installs with pip: " + " ".join(argv)[:300]
    return None


def _audit(event: str, args: tuple) -> None:
    if event != "subprocess.Popen" or not os.environ.get(LOG_VAR):
        return
    executable, argv, _cwd, env = args
    argv = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a)
            for a in ([argv] if isinstance(argv, (str, bytes, os.PathLike)) else argv)]
    heavy = _heavy_command(argv)
    if heavy:
        record(heavy)
    # Carry the guard into children that get an explicit environment (one with env=None inherits
    # os.environ, where the conftest put it already): this interpreter again (`python -m envctl`,
    # `python -c ...`), or any child whose environment sets PYTHONPATH (a shell running envctl).
    # A child whose environment was cleaned of PYTHONPATH (an env's own python) is left as it is;
    # what starts it is watched where it starts. An explicit empty LOG_VAR opts a child out
    # (the guard's own test runs an inner pytest).
    program = os.fsdecode(executable) if executable else (argv[0] if argv else "")
    if isinstance(env, dict) and env.get(LOG_VAR) != "" and (program == sys.executable or "PYTHONPATH" in env):
        env[LOG_VAR] = os.environ[LOG_VAR]
        paths = env.get("PYTHONPATH", "")
        if SITE_DIR not in paths.split(os.pathsep):
            env["PYTHONPATH"] = SITE_DIR + (os.pathsep + paths if paths else "")


def _wrap(module, name: str, what) -> None:
    real = getattr(module, name, None)
    if real is None or getattr(real, "_tier_guarded", False):
        return

    @functools.wraps(real)
    def guarded(*args, **kwargs):
        record(what(*args, **kwargs))
        return real(*args, **kwargs)

    guarded._tier_guarded = True
    setattr(module, name, guarded)


def _patch_rattler(module) -> None:
    _wrap(module, "install", lambda *a, **k: f"builds an env (rattler.install into {k.get('target_prefix', a[1:2])})")


def _patch_torch_onnx(module) -> None:
    _wrap(module, "export", lambda *a, **k: "runs a torch export (torch.onnx.export)")


_PATCHES = {"rattler": _patch_rattler, "torch.onnx": _patch_torch_onnx}


class _PatchOnImport:
    """A meta-path finder that patches `rattler` and `torch.onnx` right after they are first imported."""

    def find_spec(self, name, path=None, target=None):
        patch = _PATCHES.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        real_exec = loader.exec_module

        def exec_module(module):
            real_exec(module)
            patch(module)

        loader.exec_module = exec_module
        return spec


_installed = False


def install() -> None:
    """Install the hooks in this process (idempotent). They record only while LOG_VAR is set."""
    global _installed
    if _installed:
        return
    _installed = True
    for name, patch in _PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
    sys.meta_path.insert(0, _PatchOnImport())
    sys.addaudithook(_audit)
