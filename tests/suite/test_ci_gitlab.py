"""`envctl ci gitlab`: the pipeline that certifies a matrix on GitLab CI, checked against GitLab's own schema."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from envctl.cli import app
from support import broken_locks
from support.ci_targets import cpu, cuda

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "data" / "gitlab-ci.schema.json").read_text())


TARGETS = {
    "linux-cpu": cpu(["linux-64"]),
    "arm-cpu": cpu(["linux-aarch64"]),
    "everywhere": cpu(["linux-64", "osx-arm64", "win-64"]),
    "intel-mac": cpu(["osx-64"]),  # GitLab hosts no Intel macOS runner
    "cu12": cuda(["linux-64", "win-64"]),  # no labels: lock-only, one job on Linux
    "cu118": cuda(["linux-64"], cuda="11.8", runner_labels=["gpu", "cuda11"]),
    "jetson": cuda(["linux-aarch64"], cuda="11.8", runner_labels={"linux-aarch64": ["orin"]}),
}
# (target, platform) -> (tags, mode)
EXPECTED = {
    ("linux-cpu", "linux-64"): (None, "run"),
    ("arm-cpu", "linux-aarch64"): (["saas-linux-small-arm64"], "run"),
    ("everywhere", "linux-64"): (None, "run"),
    ("everywhere", "osx-arm64"): (["saas-macos-medium-m1"], "run"),
    ("everywhere", "win-64"): (["saas-windows-medium-amd64"], "run"),
    ("intel-mac", "osx-64"): (None, "lock-only"),
    ("cu12", "linux-64+win-64"): (None, "lock-only"),
    ("cu118", "linux-64"): (["gpu", "cuda11"], "run"),
    ("jetson", "linux-aarch64"): (["orin"], "run"),
}


@pytest.fixture()
def matrix(tmp_path):
    path = tmp_path / "envs" / "matrix.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"version": 1, "targets": TARGETS}, sort_keys=False))
    return path


PINNED = "envctl-onnx @ git+https://example.org/team/envctl.git@" + "0" * 40
INSTALL = ("--install", PINNED)  # a project outside envctl's repository says where envctl's source is


def generate(matrix: Path, *extra: str) -> tuple[str, dict]:
    extra = extra if "--install" in extra or matrix.is_relative_to(REPO) else (*extra, *INSTALL)
    result = runner.invoke(app, ["ci", "gitlab", "--matrix", str(matrix), "--out", "-", *extra])
    assert result.exit_code == 0, result.output
    return result.stdout, yaml.safe_load(result.stdout)


def certify_jobs(doc: dict) -> dict[tuple[str, str], dict]:
    out = {}
    for name, job in doc.items():
        if isinstance(job, dict) and job.get("stage") == "certify":
            _, target, _, platform = name.split(" ")
            out[(target, platform)] = job
    return out


def schema_errors(doc: dict) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(doc)]


def test_gitlab_schema_accepts_the_pipeline(matrix, tmp_path):
    for extra in ((), ("--gpu-label", "gpu"), ("--fail-on-drift",)):
        _, doc = generate(matrix, *extra)
        assert schema_errors(doc) == []
    _, doc = generate(REPO / "envs" / "matrix.yaml")
    assert schema_errors(doc) == []
    # and the schema is strict enough to catch a broken one
    broken = dict(doc, lock=dict(doc["lock"], timeout=5, tags="gpu"))
    assert len(schema_errors(broken)) >= 1
    broken = dict(doc, lock=dict(doc["lock"], artifacts={"reports": {"junit": 3}}))
    assert schema_errors(broken)


def test_stages_jobs_tags_and_modes(matrix):
    text, doc = generate(matrix)
    assert doc["stages"] == ["lock", "certify", "report"]
    jobs = certify_jobs(doc)
    assert {k: (j.get("tags"), "lock-only" if "--fail-on-lock-only" not in j["script"][-1] else "run")
            for k, j in jobs.items()} == EXPECTED
    assert text.count("\n  stage: certify\n") == len(EXPECTED)
    for (target, platform), job in jobs.items():
        assert job["needs"] == ["lock"]
        assert job["timeout"].endswith("m") and 0 < int(job["timeout"][:-1]) <= 360
        certify = job["script"][-1]
        assert certify.startswith(f'envctl certify "{target}" --locked --junit "reports/{target}-{platform}.xml"')
        assert job["artifacts"]["when"] == "always"
        assert job["artifacts"]["reports"]["junit"] == f"reports/{target}-{platform}.xml"
        assert f"certs/{target}.json" in job["artifacts"]["paths"]
        # Docker image on Linux runners only; lock-only jobs are Linux jobs
        linux = platform.startswith("linux-") or EXPECTED[(target, platform)][1] == "lock-only"
        assert (job.get("image") == "python:3.12") == linux
    mac = certify_jobs(doc)[("everywhere", "osx-arm64")]["script"]  # envctl in a venv of its own (PEP 668)
    assert mac[:3] == ["python3 -m venv .envctl/ci-venv", ". .envctl/ci-venv/bin/activate", f"python -m pip install {json.dumps(PINNED)}"]


def test_cache_is_keyed_on_the_lock_file(matrix):
    _, doc = generate(matrix)
    for (target, platform), job in certify_jobs(doc).items():
        if "--fail-on-lock-only" not in job["script"][-1]:
            assert "cache" not in job  # lock-only builds nothing
            continue
        cache = job["cache"]
        assert cache["key"]["files"] == [f"locks/{target}.conda-lock.yml"]
        assert cache["key"]["prefix"] == f"{target}-{platform}"
        assert cache["paths"] == [".envctl/cache/rattler", ".envctl/cache/uv"]
    assert doc["variables"]["RATTLER_CACHE_DIR"] == "$CI_PROJECT_DIR/.envctl/cache/rattler"


def test_lock_stage_and_fan_in(matrix):
    _, doc = generate(matrix)
    lock = doc["lock"]
    assert lock["stage"] == "lock" and lock["artifacts"]["paths"] == ["locks/"]
    assert lock["script"][1] == "envctl matrix check"
    assert "envctl lock --check" in lock["script"][2] and 'envctl lock "$target"' in lock["script"][2]
    report = doc["report"]
    assert report["stage"] == "report" and report["when"] == "always" and "needs" not in report  # every earlier job's artifacts
    assert "envctl report --drift reports --markdown reports/drift.md" in report["script"]
    assert "envctl report --html reports/matrix.html" in report["script"]
    assert report["artifacts"]["paths"] == ["reports/"]
    for (target, platform), job in certify_jobs(doc).items():  # one certificate per job reaches the fan-in
        assert job["after_script"] == [f'cp "certs/{target}.json" "reports/{target}-{platform}.cert.json"']
    _, strict = generate(matrix, "--fail-on-drift")
    assert any("--fail-on-drift" in line for line in strict["report"]["script"])


def test_lock_script_solves_missing_and_checks_committed_locks(matrix, tmp_path):
    _, doc = generate(matrix)
    script = doc["lock"]["script"][2]
    project = matrix.parent.parent
    (project / "locks").mkdir()
    broken_locks.write(project / "locks" / "jetson.conda-lock.yml", "committed\n")
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    (bin_dir / "envctl").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n[ "$1 $2" = "lock --check" ] && exit "${{STALE:-0}}"\nexit 0\n')
    (bin_dir / "envctl").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    done = subprocess.run(["sh", "-c", script], cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = calls.read_text().splitlines()
    assert "lock --check jetson" in lines and "lock jetson" not in lines
    assert "lock cu12" in lines and "No lock was committed for:" in done.stdout and "cu12" in done.stdout
    stale = subprocess.run(["sh", "-c", script], cwd=project, env=env | {"STALE": "1"}, capture_output=True, text=True, timeout=120)
    # A stale committed lock is never relocked: it is recorded, and fails that target's certify job only.
    assert stale.returncode == 0 and "Not locked: jetson" in stale.stdout
    assert (project / "locks" / "failed" / "jetson.txt").read_text().startswith("envctl lock --check jetson exited 1")
    assert not (project / "locks" / "failed" / "cu12.txt").exists()


def test_default_branch_pipelines_are_never_cancelled(matrix):
    _, doc = generate(matrix)
    assert doc["default"]["interruptible"] is True
    assert doc["workflow"]["auto_cancel"]["on_new_commit"] == "interruptible"
    first = doc["workflow"]["rules"][0]
    assert "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH" in first["if"] and '"schedule"' in first["if"]
    assert first["auto_cancel"]["on_new_commit"] == "none"
    assert doc["workflow"]["rules"][-1] == {"when": "always"}


def test_project_in_a_subfolder_and_output_file(tmp_path):
    (tmp_path / ".git").mkdir()
    path = tmp_path / "ml" / "m.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"version": 1, "targets": {"a": cpu(["linux-64"])}}))
    _, doc = generate(path, "--install", "./ml-tools/envctl")
    assert doc["lock"]["script"][:3] == ['cd "ml"', 'python -m pip install "./ml-tools/envctl"', "envctl matrix check --matrix m.yaml"]
    (job,) = certify_jobs(doc).values()
    assert job["script"][0] == 'cd "ml"' and job["after_script"][0] == 'cd "ml"'
    assert job["cache"]["key"]["files"] == ["ml/locks/a.conda-lock.yml"]
    assert job["artifacts"]["reports"]["junit"] == "ml/reports/a-linux-64.xml"
    assert "ml/certs/a.json" in job["artifacts"]["paths"]
    result = runner.invoke(app, ["ci", "gitlab", "--matrix", str(path), *INSTALL])
    assert result.exit_code == 0, result.output
    written = (tmp_path / ".gitlab-ci.yml").read_text()
    assert "written (1 certify job(s))" in " ".join(result.output.split())
    result = runner.invoke(app, ["ci", "gitlab", "--matrix", str(path), *INSTALL])
    assert "unchanged" in result.output and (tmp_path / ".gitlab-ci.yml").read_text() == written


def test_bad_input_is_a_clean_error(matrix, tmp_path):
    result = runner.invoke(app, ["ci", "gitlab", "--matrix", str(matrix), "--gpu-label", "a b", "--out", "-", *INSTALL])
    assert result.exit_code == 2 and "runner label" in result.output and "Traceback" not in result.output
    path = tmp_path / "m\n  evil: true.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "targets": {"a": cpu(["linux-64"])}}))
    out = tmp_path / "out.yml"
    result = runner.invoke(app, ["ci", "gitlab", "--matrix", str(path), "--out", str(out), *INSTALL])
    assert result.exit_code == 2 and "line break" in result.output and not out.exists()


GENERATORS = ("github", "gitlab")


def install_lines(text: str) -> list[str]:
    return [line.split("pip install", 1)[1].strip() for line in text.splitlines() if "pip install" in line]


def from_source(spec: str) -> bool:
    """A path, or a URL (never a name pip would look up in an index)."""
    spec = json.loads(spec)  # the generators write it as a double-quoted YAML scalar
    return spec in (".", "..") or spec.startswith(("./", "../", "/")) or "://" in spec


@pytest.mark.parametrize("generator", GENERATORS)
def test_every_generator_installs_envctl_from_the_repository_source(generator, matrix):
    def run(path: Path, *extra: str):
        return runner.invoke(app, ["ci", generator, "--matrix", str(path), "--out", "-", *extra])

    own = run(REPO / "envs" / "matrix.yaml")  # envctl's own repository: its checkout
    assert own.exit_code == 0, own.output
    assert set(install_lines(own.stdout)) == {'"."'}
    pinned = PINNED
    given = run(matrix, "--install", pinned)
    assert given.exit_code == 0 and set(install_lines(given.stdout)) == {json.dumps(pinned)}
    for text in (own.stdout, given.stdout, run(matrix, *INSTALL).stdout):
        assert install_lines(text) and all(from_source(spec) for spec in install_lines(text))
        assert "pip install envctl" not in text and "envctl==" not in text
    for bad in ("envctl", "envctl==0.1.0", "envctl-onnx>=0.1"):  # a bare name from an index: refused
        refused = run(matrix, "--install", bad)
        assert refused.exit_code == 2 and "--install" in refused.output and "index" in refused.output
        assert "Traceback" not in refused.output
    nowhere = run(matrix)  # not envctl's repository, nothing given: say how, write nothing
    assert nowhere.exit_code == 2 and "--install" in nowhere.output and "stages:" not in nowhere.output
