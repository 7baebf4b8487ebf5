"""`envctl ci github`: a GitHub Actions workflow that certifies the matrix.

One job checks the matrix and refuses missing or stale locks; then one job
per (target, platform) rebuilds the env from its committed lock and
certifies it on a runner of that platform, with the rattler and uv package
caches keyed on the lock file's hash (a new lock starts from the nearest old
cache). Targets that need an NVIDIA GPU have no GitHub-hosted runner: they
run on hosted runners, where `envctl certify` certifies them lock-only, unless
`--gpu-label` sends them to self-hosted GPU runners.

The YAML is written as text, not dumped: it carries comments, and the same
matrix always gives the same bytes (no dates, matrix order), so the file can
be committed and checked for drift by regenerating it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_text_atomic
from .matrix import Target, load_matrix

__all__ = ["RUNNERS", "Entry", "entries", "github_workflow", "write_workflow", "default_out", "job_count"]

# GitHub-hosted runner per conda platform (docs.github.com: "GitHub-hosted runners").
# macos-13 (the last Intel image) was retired in 2025; macos-15-intel replaces it.
RUNNERS = {
    "linux-64": "ubuntu-latest",
    "linux-aarch64": "ubuntu-24.04-arm",
    "osx-arm64": "macos-14",
    "osx-64": "macos-15-intel",
    "win-64": "windows-latest",
}
# Self-hosted runners carry these default labels (OS, architecture).
SELF_HOSTED = {
    "linux-64": ("Linux", "X64"),
    "linux-aarch64": ("Linux", "ARM64"),
    "osx-arm64": ("macOS", "ARM64"),
    "osx-64": ("macOS", "X64"),
    "win-64": ("Windows", "X64"),
}
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
PYTHON = "3.12"  # the interpreter envctl itself runs with; targets bring their own
# Majors that run on Node 24 (GitHub removed Node 20 from its runners in September 2026).
ACTIONS = {
    "checkout": "actions/checkout@v5",
    "python": "actions/setup-python@v6",
    "cache": "actions/cache@v5",
    "upload": "actions/upload-artifact@v6",
    "junit": "mikepenz/action-junit-report@v6",
}


@dataclass(frozen=True)
class Entry:
    """One certify job: a target on one of its platforms."""

    target: str
    platform: str
    runner: str | tuple[str, ...]
    mode: str  # "run" or "lock-only"
    note: str

    @property
    def lock(self) -> str:
        return f"locks/{self.target}.conda-lock.yml"


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(value)


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def entries(targets: list[Target], gpu_label: str | None = None) -> list[Entry]:
    out = []
    for target in targets:
        gpu = target.execution_provider in GPU_PROVIDERS
        for platform in target.platforms:
            if gpu and gpu_label:
                runner: str | tuple[str, ...] = ("self-hosted", *SELF_HOSTED[platform], gpu_label)
                mode, note = "run", f"needs {target.execution_provider}: self-hosted runner labelled {gpu_label}"
            elif gpu:
                runner, mode = RUNNERS[platform], "lock-only"
                note = (f"needs a self-hosted GPU runner (CUDA {target.cuda or '?'}); hosted runners have none, "
                        "so it is certified lock-only (regenerate with --gpu-label LABEL to run it)")
            else:
                runner, mode, note = RUNNERS[platform], "run", _one_line(target.description) or "CPU"
            out.append(Entry(target.name, platform, runner, mode, note))
    return out


def _install_spec(root: Path, install: str | None = None) -> str:
    # From source only: envctl's own checkout, a pinned commit, or a checked --install (see ci_install).
    from .ci_install import install_spec

    return install_spec(root, _checkout_root(root), install)


def _checkout_root(root: Path) -> Path:
    """The git checkout holding the project (GitHub runs workflows from its root), else the project."""
    root = Path(root).absolute()
    return next((p for p in (root, *root.parents) if (p / ".git").exists()), root)


def _project_dir(root: Path) -> str:
    """The project's folder relative to its checkout ('' when it is the checkout)."""
    rel = Path(root).absolute().relative_to(_checkout_root(root)).as_posix()
    return "" if rel == "." else rel


def default_out(matrix_path: Path) -> Path:
    from .pipeline import project_root

    return _checkout_root(project_root(matrix_path)) / ".github" / "workflows" / "certify.yml"



def _setup_steps(add, spec: str) -> None:
    """Checkout, Python and envctl: the first steps of every job."""
    add(f"      - uses: {ACTIONS['checkout']}")
    add(f"      - uses: {ACTIONS['python']}")
    add("        with:")
    add(f"          python-version: {_q(PYTHON)}")
    add("      - name: Install envctl")
    add(f"        run: python -m pip install {_q(spec)}")


def github_workflow(matrix_path: Path, *, gpu_label: str | None = None, install: str | None = None,
                    branch: str = "main") -> str:
    """The workflow text for the matrix at `matrix_path`."""
    from .errors import EnvctlError
    from .pipeline import project_root

    if gpu_label is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", gpu_label):
        raise EnvctlError(f"--gpu-label {gpu_label!r}: a runner label is letters, digits, '.', '_' or '-'.")
    matrix = load_matrix(matrix_path)
    root = project_root(matrix_path)
    jobs = entries(list(matrix.targets.values()), gpu_label)
    if not jobs:
        raise EnvctlError("the matrix has no targets: nothing to certify.", file=matrix_path)
    try:
        rel = Path(matrix_path).absolute().relative_to(root).as_posix()
    except ValueError:
        rel = Path(matrix_path).name
    matrix_opt = "" if rel == "envs/matrix.yaml" else f" --matrix {rel}"
    # Steps run in the project; paths seen by actions (cache, upload, hashFiles) are from the checkout's root.
    base = _project_dir(root)
    P = (lambda p: f"{base}/{p}") if base else (lambda p: p)  # noqa: E731
    spec = _install_spec(root, install)
    L: list[str] = []
    add = L.append
    add(f"# Generated by `envctl ci github` from {P(rel)}: regenerate it after changing the matrix, do not edit.")
    add("# Locks are checked first (a missing or stale lock fails the run before anything is built);")
    add("# then each target is rebuilt from its committed lock and certified on a runner of its platform.")
    add("name: certify")
    add("")
    add("on:")
    add("  push:")
    add(f"    branches: [{_q(branch)}]")
    add("  pull_request:")
    add("  workflow_dispatch:")
    add("")
    add("permissions:")
    add("  contents: read")
    add("  checks: write  # the JUnit report becomes a check run")
    add("")
    add("concurrency:")
    add("  group: certify-${{ github.ref }}")
    add("  cancel-in-progress: true")
    add("")
    add("defaults:")
    add("  run:")
    add("    shell: bash  # the same commands on Linux, macOS and Windows runners")
    if base:
        add(f"    working-directory: {_q(base)}")
    add("")
    add("jobs:")
    add("  check:")
    add("    name: matrix check and locks")
    add("    runs-on: ubuntu-latest")
    add("    steps:")
    _setup_steps(add, spec)
    add("      - name: Check the matrix against the compatibility rules")
    add(f"        run: envctl matrix check{matrix_opt}")
    add("      - name: Refuse missing or stale locks")
    add(f"        run: envctl lock --check --all{matrix_opt}")
    add("")
    add("  certify:")
    add("    name: certify ${{ matrix.target }} on ${{ matrix.platform }} (${{ matrix.mode }})")
    add("    needs: check")
    add("    runs-on: ${{ matrix.runner }}")
    add("    strategy:")
    add("      fail-fast: false  # one broken target must not hide the others")
    add("      matrix:")
    add("        include:")
    for job in jobs:
        add(f"          # {job.target} on {job.platform}: {job.note}")
        add(f"          - target: {_q(job.target)}")
        add(f"            platform: {_q(job.platform)}")
        runner = _q(job.runner) if isinstance(job.runner, str) else "[" + ", ".join(_q(r) for r in job.runner) + "]"
        add(f"            runner: {runner}")
        add(f"            mode: {_q(job.mode)}")
        add(f"            lock: {_q(P(job.lock))}")
    add("    env:")
    add("      # Package caches inside the workspace: same filesystem as .envctl/envs, so installs hardlink.")
    add(f"      RATTLER_CACHE_DIR: ${{{{ github.workspace }}}}/{P('.envctl/cache/rattler')}")
    add(f"      UV_CACHE_DIR: ${{{{ github.workspace }}}}/{P('.envctl/cache/uv')}")
    add("      TARGET: ${{ matrix.target }}")
    add("      REPORT: reports/${{ matrix.target }}-${{ matrix.platform }}")
    add("    steps:")
    _setup_steps(add, spec)
    add("      - name: Restore the package cache (keyed on the lock's hash)")
    add("        if: matrix.mode == 'run'")
    add(f"        uses: {ACTIONS['cache']}")
    add("        with:")
    add("          path: |")
    add(f"            {P('.envctl/cache/rattler')}")
    add(f"            {P('.envctl/cache/uv')}")
    add("          key: envctl-${{ matrix.platform }}-${{ matrix.target }}-${{ hashFiles(matrix.lock) }}")
    add("          restore-keys: |")
    add("            envctl-${{ matrix.platform }}-${{ matrix.target }}-")
    add("            envctl-${{ matrix.platform }}-")
    add("      - name: Certify (builds the env from its lock; writes the step summary)")
    add(f'        run: mkdir -p reports && envctl certify "$TARGET"{matrix_opt} --junit "$REPORT.xml" --markdown "$REPORT.md"')
    add("      - name: Upload the certificate and reports")
    add("        if: always()")
    add(f"        uses: {ACTIONS['upload']}")
    add("        with:")
    add("          name: certify-${{ matrix.target }}-${{ matrix.platform }}")
    add("          path: |")
    add(f"            {P('certs')}/${{{{ matrix.target }}}}.json")
    add(f"            {P('reports')}/")
    add("          if-no-files-found: warn")
    add("      - name: Publish the JUnit report")
    add("        if: always()")
    add(f"        uses: {ACTIONS['junit']}")
    add("        with:")
    add(f"          report_paths: {P('reports')}/${{{{ matrix.target }}}}-${{{{ matrix.platform }}}}.xml")
    add("          check_name: certify ${{ matrix.target }} on ${{ matrix.platform }}")
    add("          require_tests: false  # a lock-only target may have no test cases")
    add("      - name: Say so when certify left no report")
    add(f"        if: failure() && hashFiles(format('{P('reports')}/{{0}}-{{1}}.md', matrix.target, matrix.platform)) == ''")
    add('        run: echo "envctl certify $TARGET ended without a report; see the job log." >> "$GITHUB_STEP_SUMMARY"')
    return "\n".join(L) + "\n"


def write_workflow(path: Path, text: str) -> bool:
    """Write the workflow if its text changed; True when written."""
    path = Path(path)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    write_text_atomic(path, text)
    return True


def job_count(text: str) -> int:
    return text.count("\n          - target: ")
