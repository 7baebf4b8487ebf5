"""`envctl ci github`: the workflow that certifies a matrix on GitHub Actions."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from envctl.suite.ci import github as ci
from envctl.cli import app
from support import broken_locks
from support.ci_targets import cpu, cuda

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


TARGETS = {
    "linux-cpu": cpu(["linux-64"], description="x86 <CPU> & friends"),
    "arm-cpu": cpu(["linux-aarch64"]),
    "mac": cpu(["osx-arm64"]),
    "win": cpu(["win-64"]),
    "everywhere": cpu(["linux-64", "osx-arm64", "win-64"]),
    "linux-cuda": cuda(["linux-64"]),
    "win-cuda": cuda(["win-64"]),
    "jetson": cuda(["linux-aarch64"], cuda="11.8", execution_provider="CUDAExecutionProvider"),
}
EXPECTED = [  # (target, platform, hosted runner, mode): lock-only jobs need no runner of their platform
    ("linux-cpu", "linux-64", "ubuntu-latest", "run"),
    ("arm-cpu", "linux-aarch64", "ubuntu-24.04-arm", "run"),
    ("mac", "osx-arm64", "macos-14", "run"),
    ("win", "win-64", "windows-latest", "run"),
    ("everywhere", "linux-64", "ubuntu-latest", "run"),
    ("everywhere", "osx-arm64", "macos-14", "run"),
    ("everywhere", "win-64", "windows-latest", "run"),
    ("linux-cuda", "linux-64", "ubuntu-latest", "lock-only"),
    ("win-cuda", "win-64", "ubuntu-latest", "lock-only"),
    ("jetson", "linux-aarch64", "ubuntu-latest", "lock-only"),
]


@pytest.fixture()
def matrix(tmp_path):
    path = tmp_path / "envs" / "matrix.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"version": 1, "targets": TARGETS}, sort_keys=False))
    return path


# A user's project installs envctl from a pinned commit (see test_ci_install.py).
PINNED = "envctl-onnx @ git+https://example.org/team/envctl.git@" + "0" * 40
INSTALL = ("--install", PINNED)


def generate(matrix: Path, *extra: str) -> tuple[str, dict]:
    extra = extra if "--install" in extra else (*extra, *INSTALL)
    result = runner.invoke(app, ["ci", "github", "--matrix", str(matrix), "--out", "-", *extra])
    assert result.exit_code == 0, result.output
    return result.stdout, yaml.safe_load(result.stdout)


def steps_by_name(job: dict) -> dict[str, dict]:
    return {s.get("name") or s["uses"].split("@")[0]: s for s in job["steps"]}


def test_workflow_checks_locks_then_certifies_each_target_on_its_runner(matrix):
    text, doc = generate(matrix)
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert {"push", "pull_request", "workflow_dispatch", "schedule"} <= set(on)
    assert set(doc["jobs"]) == {"lock", "certify", "report"}

    check = doc["jobs"]["lock"]
    runs = [s["run"] for s in check["steps"] if "run" in s]
    assert "envctl matrix check" in runs
    locking = next(r for r in runs if "envctl lock --check" in r)
    assert runs.index("envctl matrix check") < runs.index(locking)

    job = doc["jobs"]["certify"]
    assert job["needs"] == "lock" and job["runs-on"] == "${{ matrix.runner }}"
    assert job["strategy"]["fail-fast"] is False
    include = job["strategy"]["matrix"]["include"]
    assert [(e["target"], e["platform"], e["runner"], e["mode"]) for e in include] == EXPECTED
    assert all(e["lock"] == f"locks/{e['target']}.conda-lock.yml" for e in include)

    steps = steps_by_name(job)
    assert steps["Install envctl"]["run"].startswith("python -m pip install ")
    cache = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/cache@"))
    assert "hashFiles(matrix.lock)" in cache["with"]["key"]
    assert ".envctl/cache/rattler" in cache["with"]["path"]
    assert job["env"]["RATTLER_CACHE_DIR"].endswith(".envctl/cache/rattler")
    certify = next(s for s in job["steps"] if "envctl certify" in s.get("run", ""))
    # --locked: the lock job checked or solved every lock; a certify job never relocks
    assert 'envctl certify "$TARGET" --locked --junit "$REPORT.xml" --markdown "$REPORT.md" $CERTIFY_FLAGS' in certify["run"]
    assert job["env"]["CERTIFY_FLAGS"] == "${{ matrix.flags }}"
    uses = [s.get("uses", "").split("@")[0] for s in job["steps"]]
    assert {"actions/checkout", "actions/setup-python", "actions/upload-artifact", "mikepenz/action-junit-report"} <= set(uses)
    junit = next(s for s in job["steps"] if s.get("uses", "").startswith("mikepenz/"))
    assert junit["if"] == "always() && matrix.mode != 'lock-check'" and "REPORT" not in junit["with"]["report_paths"]
    assert "GITHUB_STEP_SUMMARY" in text

    # CUDA targets say why they are lock-only, next to their entry.
    for name in ("linux-cuda", "win-cuda", "jetson"):
        comment = next(line for line in text.splitlines() if line.strip().startswith(f"# {name} on "))
        assert "GPU runner" in comment and "lock-only" in comment and "runner_labels" in comment
    assert "# linux-cpu on linux-64: x86 <CPU> & friends" in text


def test_output_is_deterministic_and_written_once(matrix, tmp_path):
    first, _ = generate(matrix)
    assert generate(matrix)[0] == first
    out = tmp_path / ".github" / "workflows" / "certify.yml"
    result = runner.invoke(app, ["ci", "github", "--matrix", str(matrix), *INSTALL])  # default: <project>/.github/workflows
    assert result.exit_code == 0, result.output
    assert out.read_text() == first and "10 certify job(s)" in result.output
    result = runner.invoke(app, ["ci", "github", "--matrix", str(matrix), "--out", str(out), *INSTALL])
    assert "unchanged" in result.output


def test_gpu_label_sends_cuda_targets_to_self_hosted_runners(matrix):
    _, doc = generate(matrix, "--gpu-label", "gpu")
    include = {(e["target"], e["platform"]): e for e in doc["jobs"]["certify"]["strategy"]["matrix"]["include"]}
    assert include[("linux-cuda", "linux-64")]["runner"] == ["self-hosted", "Linux", "X64", "gpu"]
    assert include[("win-cuda", "win-64")]["runner"] == ["self-hosted", "Windows", "X64", "gpu"]
    assert include[("jetson", "linux-aarch64")]["runner"] == ["self-hosted", "Linux", "ARM64", "gpu"]
    assert all(e["mode"] == "run" and e["flags"] == "--fail-on-lock-only" for e in include.values())
    assert include[("linux-cpu", "linux-64")]["runner"] == "ubuntu-latest"


def test_project_in_a_subfolder_of_the_checkout(tmp_path):
    # A repository whose envctl project lives in ml/ with its matrix at ml/m.yaml.
    (tmp_path / ".git").mkdir()
    path = tmp_path / "ml" / "m.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"version": 1, "targets": {"a": cpu(["linux-64"])}}))
    text, doc = generate(path, "--install", "./tools/envctl", "--branch", "release")
    assert doc.get("on", doc.get(True))["push"]["branches"] == ["release"]
    assert doc["defaults"]["run"]["working-directory"] == "ml"  # commands run in the project
    runs = [s.get("run", "") for job in doc["jobs"].values() for s in job["steps"]]
    assert 'python -m pip install "./tools/envctl"' in runs
    assert "envctl matrix check --matrix m.yaml" in runs
    assert any("envctl certify" in r and "--matrix m.yaml" in r for r in runs)
    job = doc["jobs"]["certify"]  # actions see paths from the checkout's root
    assert job["strategy"]["matrix"]["include"][0]["lock"] == "ml/locks/a.conda-lock.yml"
    assert "ml/certs/${{ matrix.target }}.json" in text and "report_paths: ml/reports/" in text
    assert job["env"]["RATTLER_CACHE_DIR"] == "${{ github.workspace }}/ml/.envctl/cache/rattler"
    result = runner.invoke(app, ["ci", "github", "--matrix", str(path), *INSTALL])
    assert result.exit_code == 0, result.output
    assert (tmp_path / ".github" / "workflows" / "certify.yml").exists()  # where GitHub reads workflows


def test_bad_input_is_a_clean_error(matrix, tmp_path):
    result = runner.invoke(app, ["ci", "github", "--matrix", str(matrix), "--gpu-label", "gpu; rm -rf /", "--out", "-", *INSTALL])
    assert result.exit_code == 2 and "runner label" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["ci", "github", "--matrix", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_committed_workflow_is_generated_from_the_shipped_matrix():
    committed = REPO / ".github" / "workflows" / "certify.yml"
    expected = ci.SYSTEM.generate(REPO / "envs" / "matrix.yaml").text
    assert committed.read_text() == expected, "regenerate it: envctl ci github"


def test_committed_workflow_is_byte_identical_when_the_command_regenerates_it(tmp_path):
    # The workflow is rendered from templates/github-workflow.yml.j2; the committed file is the
    # reference bytes (comments, quoting, blank lines, trailing newline), through the written file.
    committed = (REPO / ".github" / "workflows" / "certify.yml").read_bytes()
    out = tmp_path / "certify.yml"
    result = runner.invoke(app, ["ci", "github", "--matrix", str(REPO / "envs" / "matrix.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == committed, "regenerate it: envctl ci github"
    assert ci.SYSTEM.generate(REPO / "envs" / "matrix.yaml").text.encode() == committed


def test_matrix_values_are_written_as_data_never_read_as_template(tmp_path):
    path = tmp_path / "envs" / "matrix.yaml"
    path.parent.mkdir()
    description = 'has << wf.install >>, <% if x %>, {{ jinja }}, ${{ secrets.TOKEN }} and "quotes"\n  over two lines'
    targets = {"a.b_c-1": cpu(["linux-64", "osx-64"], description=description),
               "cuda.12": cuda(["linux-aarch64", "win-64"], xfail="known: no driver")}
    path.write_text(yaml.safe_dump({"version": 1, "targets": targets}, sort_keys=False))
    # Without --gpu-label the CUDA target's two lock-only platforms are one job on Linux.
    for extra, cuda_jobs, runners in [
            ((), [("cuda.12", "linux-aarch64+win-64")], ["ubuntu-latest"]),
            (("--gpu-label", "gpu.x_1"), [("cuda.12", "linux-aarch64"), ("cuda.12", "win-64")],
             [["self-hosted", "Linux", "ARM64", "gpu.x_1"], ["self-hosted", "Windows", "X64", "gpu.x_1"]])]:
        text, doc = generate(path, *extra)
        comment = '# a.b_c-1 on osx-64: has << wf.install >>, <% if x %>, {{ jinja }}, ${{ secrets.TOKEN }} and "quotes" over two lines'
        assert "          " + comment in text.splitlines()
        include = doc["jobs"]["certify"]["strategy"]["matrix"]["include"]
        assert [(e["target"], e["platform"]) for e in include] == [("a.b_c-1", "linux-64"), ("a.b_c-1", "osx-64"), *cuda_jobs]
        assert [e["runner"] for e in include] == ["ubuntu-latest", "macos-15-intel", *runners]
        assert [e["lock"] for e in include][-1] == "locks/cuda.12.conda-lock.yml"
        assert '          - target: "cuda.12"' in text.splitlines()  # quoted, as every matrix value


def test_a_line_break_in_a_bare_value_is_refused_before_writing(tmp_path):
    # The matrix path is written unquoted into `run:` lines and the header; a line break there
    # would add YAML of the file name's choosing.
    path = tmp_path / "m\n  evil: true.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "targets": {"a": cpu(["linux-64"])}}))
    out = tmp_path / "certify.yml"
    result = runner.invoke(app, ["ci", "github", "--matrix", str(path), "--out", str(out), *INSTALL])
    assert result.exit_code == 2, result.output
    assert "line break" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_the_template_ships_in_the_wheel(tmp_path):
    # An installed envctl has no source tree: the templates must be package data.
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(project)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("envctl_onnx-*.whl")  # the distribution's name, normalized
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("envctl/suite/templates/")}
    folder = REPO / "src" / "envctl" / "suite" / "templates"
    templates = {f"envctl/suite/templates/{p.name}" for p in folder.glob("*.j2")}
    assert f"envctl/suite/templates/{ci.SYSTEM.template}" in templates and shipped == templates


# ------------------------------------------------------------ safety, fan-in, schedule, locks

DATA = Path(__file__).resolve().parents[1] / "data"


def github_expr(expr: str, **context: object) -> object:
    """Evaluate the small subset of GitHub's expression language the workflow uses (==, !=, &&, ||, ())."""
    body = expr.strip().removeprefix("${{").removesuffix("}}")
    for name, value in sorted(context.items(), key=lambda kv: -len(kv[0])):
        body = body.replace(name, repr(value))
    return eval(body.replace("&&", " and ").replace("||", " or "), {"__builtins__": {}})  # noqa: S307


def test_workflow_passes_the_github_workflow_schema(matrix):
    import jsonschema

    schema = __import__("json").loads((DATA / "github-workflow.schema.json").read_text())
    for extra in ((), ("--gpu-label", "gpu"), ("--fail-on-drift",)):
        _, doc = generate(matrix, *extra)
        doc["on"] = doc.pop(True, doc.get("on"))
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(doc))
        assert errors == [], [e.message for e in errors]
    committed = yaml.safe_load((REPO / ".github" / "workflows" / "certify.yml").read_text())
    committed["on"] = committed.pop(True, committed.get("on"))
    assert list(jsonschema.Draft7Validator(schema).iter_errors(committed)) == []
    doc["jobs"]["lock"]["timeout-minutes"] = "soon"  # the schema does catch a broken workflow
    assert list(jsonschema.Draft7Validator(schema).iter_errors(doc))


def test_every_job_has_a_timeout_and_only_the_permissions_it_needs(matrix):
    text, doc = generate(matrix)
    assert doc["permissions"] == {}  # nothing by default
    jobs = doc["jobs"]
    for name, job in jobs.items():
        assert "timeout-minutes" in job, name
        assert job["permissions"].get("contents") == "read", name
        writes = {k for k, v in job["permissions"].items() if v == "write"}
        assert writes == ({"checks"} if name == "certify" else set()), name  # only the JUnit check run writes
    assert isinstance(jobs["lock"]["timeout-minutes"], int) and isinstance(jobs["report"]["timeout-minutes"], int)
    assert jobs["certify"]["timeout-minutes"] == "${{ matrix.minutes }}"
    for row in jobs["certify"]["strategy"]["matrix"]["include"]:
        assert isinstance(row["minutes"], int) and 0 < row["minutes"] <= 360
        # a run job allows for every smoke run at the target's hang timeout (900 s, 3 models x 1 exporter)
        assert row["minutes"] == (20 if row["mode"] == "lock-only" else 30 + 3 * 15)
    for job in jobs.values():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


def test_concurrency_never_cancels_runs_on_the_default_branch(matrix):
    _, doc = generate(matrix)
    group, cancel = doc["concurrency"]["group"], doc["concurrency"]["cancel-in-progress"]

    def evaluate(ref: str, event: str, run_id: int) -> tuple[str, bool]:
        ctx = {"github.ref": ref, "github.event_name": event, "github.run_id": str(run_id)}
        return group.replace(group[group.index("${{"):], str(github_expr(group[group.index("${{"):], **ctx))), \
            github_expr(cancel, **ctx)

    main1, main2 = evaluate("refs/heads/main", "push", 1), evaluate("refs/heads/main", "push", 2)
    assert main1[1] is False and main1[0] != main2[0]  # each run its own group: none cancelled or dropped
    sched = evaluate("refs/heads/main", "schedule", 3)
    assert sched[1] is False and sched[0] not in (main1[0], main2[0])
    pr1, pr2 = evaluate("refs/pull/7/merge", "pull_request", 4), evaluate("refs/pull/7/merge", "pull_request", 5)
    assert pr1[1] is True and pr1[0] == pr2[0]  # a newer push to the PR replaces the older run
    other = evaluate("refs/heads/feature", "push", 6)
    assert other[1] is True and other[0] != pr1[0]
    _, doc = generate(matrix, "--branch", "release/2")
    assert "refs/heads/release/2" in doc["concurrency"]["group"]
    result = runner.invoke(app, ["ci", "github", "--matrix", str(matrix), "--branch", "x' || true", "--out", "-", *INSTALL])
    assert result.exit_code == 2 and "--branch" in result.output


def test_weekly_schedule(matrix):
    _, doc = generate(matrix)
    (entry,) = doc.get("on", doc.get(True))["schedule"]
    minute, hour, day, month, weekday = entry["cron"].split()
    assert minute.isdigit() and hour.isdigit() and (day, month) == ("*", "*") and weekday.isdigit()


def test_fan_in_gathers_every_certificate_and_reports(matrix):
    _, doc = generate(matrix)
    job = doc["jobs"]["report"]
    assert job["needs"] == ["lock", "certify"] and "!cancelled()" in job["if"] and job["runs-on"] == "ubuntu-latest"
    downloads = [s["with"] for s in job["steps"] if s.get("uses", "").startswith("actions/download-artifact@")]
    assert {"name": "locks", "path": "locks"} in downloads  # the HTML report compares certificates with them
    download = next(d for d in downloads if "pattern" in d)
    assert download["pattern"] == "certify-*" and "merge-multiple" not in download
    upload_names = {s["with"]["name"] for j in doc["jobs"].values() for s in j["steps"]
                    if s.get("uses", "").startswith("actions/upload-artifact@")}
    assert "certify-${{ matrix.target }}-${{ matrix.platform }}" in upload_names  # what the pattern gathers
    runs = [s.get("run", "") for s in job["steps"]]
    assert any(r.startswith("envctl report --drift gathered") and "--fail-on-drift" not in r for r in runs)
    assert any("envctl report --html reports/matrix.html" in r for r in runs)
    assert any(s.get("with", {}).get("name") == "matrix-report" for s in job["steps"])
    _, strict = generate(matrix, "--fail-on-drift")
    assert any("--fail-on-drift" in s.get("run", "") for s in strict["jobs"]["report"]["steps"])


def test_lock_only_jobs_run_on_linux_and_run_jobs_must_really_run(matrix):
    _, doc = generate(matrix)
    for row in doc["jobs"]["certify"]["strategy"]["matrix"]["include"]:
        if row["mode"] == "lock-only":
            assert row["runner"] == "ubuntu-latest" and row["flags"] == ""
        else:
            assert row["flags"] == "--fail-on-lock-only"


def test_lock_step_solves_missing_locks_and_keeps_committed_ones_strict(matrix, tmp_path):
    """The lock job's script, run by bash against a stand-in `envctl` that records its calls."""
    _, doc = generate(matrix)
    script = next(s["run"] for s in doc["jobs"]["lock"]["steps"] if "envctl lock --check" in s.get("run", ""))
    project = matrix.parent.parent
    (project / "locks").mkdir()
    broken_locks.write(project / "locks" / "mac.conda-lock.yml", "committed\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "envctl"  # exits 1 for `lock --check` when told to: a stale committed lock
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n[ "$1 $2" = "lock --check" ] && exit "${{STALE:-0}}"\nexit 0\n')
    fake.chmod(0o755)
    summary = tmp_path / "summary.md"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "GITHUB_STEP_SUMMARY": str(summary)}
    done = subprocess.run(["bash", "-e", "-c", script], cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = calls.read_text().splitlines()
    assert "lock --check mac" in lines and "lock mac" not in lines  # committed: checked, never relocked
    assert "lock linux-cpu" in lines and "lock --check linux-cpu" not in lines  # missing: solved here
    assert len(lines) == len(TARGETS)
    assert "Locks to commit" in summary.read_text() and " linux-cpu" in summary.read_text()
    assert "::warning::" in done.stdout
    calls.unlink()
    stale = subprocess.run(["bash", "-e", "-c", script], cwd=project, env=env | {"STALE": "1"}, capture_output=True, timeout=120)
    # A stale committed lock is never relocked: recorded, it fails that target's certify job only.
    assert stale.returncode == 0 and "lock mac" not in calls.read_text().splitlines()
    assert (project / "locks" / "failed" / "mac.txt").read_text().startswith("envctl lock --check mac exited 1")
    assert len(list((project / "locks" / "failed").iterdir())) == 1
    certify = doc["jobs"]["certify"]
    download = next(s for s in certify["steps"] if s.get("uses", "").startswith("actions/download-artifact@"))
    assert download["with"] == {"name": "locks", "path": "locks"}
    upload = next(s for s in doc["jobs"]["lock"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["name"] == "locks" and upload["with"]["path"] == "locks/"


def test_every_module_of_the_ci_package_is_a_system_the_cli_offers(tmp_path, monkeypatch):
    """A CI system is one module in suite/ci/ (and its template): the registry finds it, `envctl ci` lists it."""
    from envctl.suite import ci as ci_package

    modules = sorted(p.stem for p in Path(ci_package.__file__).parent.glob("*.py") if p.stem != "__init__")
    assert sorted(s.name for s in ci_package.systems().values()) == modules and {"github", "gitlab"} <= set(modules)
    for system in ci_package.systems().values():
        assert (REPO / "src" / "envctl" / "suite" / "templates" / system.template).is_file()
        result = runner.invoke(app, ["ci", system.name, "--help"])
        assert result.exit_code == 0 and ("--branch" in result.output) == system.takes_branch, result.output
    # A module there without SYSTEM is refused, not skipped.
    (tmp_path / "forgotten.py").write_text("NAME = 'forgotten'\n")
    monkeypatch.setattr(ci_package, "__path__", [*ci_package.__path__, str(tmp_path)])
    ci_package.systems.cache_clear()
    try:
        with pytest.raises(TypeError, match=r"forgotten\.py defines no SYSTEM"):
            ci_package.systems()
    finally:
        ci_package.systems.cache_clear()
