"""`envctl env export`: a target's lock for people who install with conda directly.

The lock format's own renderer (conda-lock's, in lock/conda_lock_format.py) writes both kinds from the lock (no re-solve):

* ``env``: an environment.yml pinned to ``name=version=build`` for conda and
  ``name == version --hash=sha256:...`` for pip (conda hands the pip list to
  ``pip install -r``, where per-line hashes are valid). envctl adds ``name:``
  and the target's pip index options (``--index-url``, ``--extra-index-url``,
  ``--find-links`` lines, which pip accepts in a requirements file), taken
  from the rendered envs/<target>/environment.yml the lock was made from.
* ``explicit``: ``@EXPLICIT`` with each conda package's URL and ``#md5``,
  then the pip part as ``# pip name @ url#sha256=...`` lines, which
  micromamba and conda-lock install (plain conda ignores them: we say so).
"""

from __future__ import annotations

from pathlib import Path

from envctl.core.errors import EnvctlError
from envctl.lock.records import LockFormatError
from envctl.lock.lockfile import lock_path

KINDS = ("env", "explicit")


def _pip_options(env_file: Path, root: Path) -> list[str] | None:
    """`--index-url ...` lines from the rendered spec's envctl block; None if it is missing."""
    from envctl.core.yamlsource import load_yaml
    from envctl.lock.pip_resolve import resolve_location

    try:
        doc = load_yaml(env_file, what="environment.yml") or {}
    except EnvctlError:
        return None
    opts = ((doc.get("envctl") or {}).get("pip_options") or {}) if isinstance(doc, dict) else {}
    lines = [f"--index-url {opts['index_url']}"] if opts.get("index_url") else []
    lines += [f"--extra-index-url {u}" for u in opts.get("extra_index_urls") or []]
    # Relative find-links are relative to the project, as when locking; the file may be used elsewhere.
    lines += [f"--find-links {resolve_location(f, root)}" for f in opts.get("find_links") or []]
    return lines


def export_env(matrix_path: Path, target_name: str, *, kind: str = "env", platform: str | None = None) -> tuple[str, list[str]]:
    """(file text, notes for stderr) for `target_name`'s lock rendered as `kind` for `platform`."""
    from envctl.lock.lockfile import load_lock, lock_format
    from envctl.lock.solve import check_locks
    from envctl.matrix.loader import load_matrix
    from envctl.core.paths import project_root
    from envctl.host.platform import host_platform
    from envctl.core.paths import env_file

    if kind not in KINDS:
        raise EnvctlError(f"--kind {kind!r}: choose env or explicit", key="--kind")
    (target,) = load_matrix(matrix_path).select([target_name])
    root = project_root(matrix_path)
    lock_file = lock_path(root, target.name)
    if not lock_file.exists():
        raise EnvctlError(f"target '{target.name}' has no lock at {lock_file}.",
                          hint=f"Make it with `envctl lock {target.name}`.")
    notes = [f"{s.reason}; exporting the lock as it is (re-lock with `envctl lock {target.name}`)"
             for s in check_locks(root, [target])]
    lock = load_lock(lock_file)
    platforms = list(lock.info.platforms)
    if platform is None:
        platform = host_platform() if host_platform() in platforms else platforms[0]
        if len(platforms) > 1 and host_platform() not in platforms:
            notes.append(f"the lock covers {', '.join(platforms)}; exporting {platform} (choose with --platform)")
    elif platform not in platforms:
        raise EnvctlError(f"the lock covers {', '.join(platforms)}, not {platform}", file=lock_file, key="--platform")
    try:
        lines = lock_format().environment_lines(lock.data, platform, kind)
    except LockFormatError as exc:
        raise EnvctlError(exc.problem, file=lock_file, key=exc.key) from None
    has_pip = bool(lock.for_platform(platform, "pip"))
    if kind == "env":
        lines = _with_name_and_indexes(lines, target.name, _pip_options(env_file(root, target), root), notes)
    elif has_pip:
        notes.append("the pip packages are '# pip' lines: micromamba and conda-lock install them, plain "
                     "`conda create --file` skips them (use --kind env there)")
    header = f"# envctl: target '{target.name}', {lock_file.name}, platform {platform}"
    return "\n".join([header, *lines]) + "\n", notes


def _with_name_and_indexes(lines: list[str], name: str, options: list[str] | None, notes: list[str]) -> list[str]:
    """conda-lock's env lines with `name:` first and the pip index options at the top of the pip list."""
    out = []
    for line in lines:
        if line.startswith("channels:"):
            out.append(f"name: {name}")
        out.append(line)
        if line.strip() == "- pip:":
            if options is None:
                notes.append("the rendered environment.yml is missing: no pip index options written "
                             "(run `envctl render` to add them)")
            out += [f"      - {opt}" for opt in options or []]
    return out
