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

from envctl.suite import ci_github as ci
from envctl.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent


def cpu(platforms, **extra):
    target = {"platforms": platforms, "channels": ["conda-forge"], "python": "3.12", "torch": "2.13",
              "onnx": "1.21.*", "onnxruntime": "1.26.*", "protobuf": ">=4.25.1", "opset": 18,
              "exporters": ["torchscript"]}
    return target | extra


def cuda(platforms, **extra):
    return cpu(platforms, **({"cuda": "12.6", "cudnn": "9", "torch": "2.13.0+cu126", "pip": ["torch", "onnxruntime"]} | extra))


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
EXPECTED = [  # (target, platform, hosted runner, mode)
    ("linux-cpu", "linux-64", "ubuntu-latest", "run"),
    ("arm-cpu", "linux-aarch64", "ubuntu-24.04-arm", "run"),
    ("mac", "osx-arm64", "macos-14", "run"),
    ("win", "win-64", "windows-latest", "run"),
    ("everywhere", "linux-64", "ubuntu-latest", "run"),
    ("everywhere", "osx-arm64", "macos-14", "run"),
    ("everywhere", "win-64", "windows-latest", "run"),
    ("linux-cuda", "linux-64", "ubuntu-latest", "lock-only"),
    ("win-cuda", "win-64", "windows-latest", "lock-only"),
    ("jetson", "linux-aarch64", "ubuntu-24.04-arm", "lock-only"),
]


@pytest.fixture()
def matrix(tmp_path):
    path = tmp_path / "envs" / "matrix.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"version": 1, "targets": TARGETS}, sort_keys=False))
    return path


def generate(matrix: Path, *extra: str) -> tuple[str, dict]:
    result = runner.invoke(app, ["ci", "github", "--matrix", str(matrix), "--out", "-", *extra])
    assert result.exit_code == 0, result.output
    return result.stdout, yaml.safe_load(result.stdout)


def steps_by_name(job: dict) -> dict[str, dict]:
    return {s.get("name") or s["uses"].split("@")[0]: s for s in job["steps"]}


def test_workflow_checks_locks_then_certifies_each_target_on_its_runner(matrix):
    text, doc = generate(matrix)
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert {"push", "pull_request", "workflow_dispatch"} <= set(on)
    assert doc["permissions"] == {"contents": "read", "checks": "write"}

    check = doc["jobs"]["check"]
    runs = [s["run"] for s in check["steps"] if "run" in s]
    assert "envctl matrix check" in runs and "envctl lock --check --all" in runs
    assert runs.index("envctl matrix check") < runs.index("envctl lock --check --all")

    job = doc["jobs"]["certify"]
    assert job["needs"] == "check" and job["runs-on"] == "${{ matrix.runner }}"
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
    assert 'envctl certify "$TARGET" --junit "$REPORT.xml" --markdown "$REPORT.md"' in certify["run"]
    uses = [s.get("uses", "").split("@")[0] for s in job["steps"]]
    assert {"actions/checkout", "actions/setup-python", "actions/upload-artifact", "mikepenz/action-junit-report"} <= set(uses)
    junit = next(s for s in job["steps"] if s.get("uses", "").startswith("mikepenz/"))
    assert junit["if"] == "always()" and "REPORT" not in junit["with"]["report_paths"]
    assert "GITHUB_STEP_SUMMARY" in text

    # CUDA targets say why they are lock-only, next to their entry.
    for name in ("linux-cuda", "win-cuda", "jetson"):
        comment = next(line for line in text.splitlines() if line.strip().startswith(f"# {name} on "))
        assert "self-hosted GPU runner" in comment and "lock-only" in comment
    assert "# linux-cpu on linux-64: x86 <CPU> & friends" in text


def test_output_is_deterministic_and_written_once(matrix, tmp_path):
    first, _ = generate(matrix)
    assert generate(matrix)[0] == first
    out = tmp_path / ".github" / "workflows" / "certify.yml"
    result = runner.invoke(app, ["ci", "github", "--matrix", str(matrix)])  # default: <project>/.github/workflows
    assert result.exit_code == 0, result.output
    assert out.read_text() == first and "10 certify job(s)" in result.output
    result = runner.invoke(app, ["ci", "github", "--matrix", str(matrix), "--out", str(out)])
    assert "unchanged" in result.output


def test_gpu_label_sends_cuda_targets_to_self_hosted_runners(matrix):
    _, doc = generate(matrix, "--gpu-label", "gpu")
    include = {(e["target"], e["platform"]): e for e in doc["jobs"]["certify"]["strategy"]["matrix"]["include"]}
    assert include[("linux-cuda", "linux-64")]["runner"] == ["self-hosted", "Linux", "X64", "gpu"]
    assert include[("win-cuda", "win-64")]["runner"] == ["self-hosted", "Windows", "X64", "gpu"]
    assert include[("jetson", "linux-aarch64")]["runner"] == ["self-hosted", "Linux", "ARM64", "gpu"]
    assert all(e["mode"] == "run" for e in include.values())
    assert include[("linux-cpu", "linux-64")]["runner"] == "ubuntu-latest"


def test_project_in_a_subfolder_of_the_checkout(tmp_path):
    # A repository whose envctl project lives in ml/ with its matrix at ml/m.yaml.
    (tmp_path / ".git").mkdir()
    path = tmp_path / "ml" / "m.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"version": 1, "targets": {"a": cpu(["linux-64"])}}))
    text, doc = generate(path, "--install", "envctl==0.1.0", "--branch", "release")
    assert doc.get("on", doc.get(True))["push"]["branches"] == ["release"]
    assert doc["defaults"]["run"]["working-directory"] == "ml"  # commands run in the project
    runs = [s.get("run", "") for job in doc["jobs"].values() for s in job["steps"]]
    assert 'python -m pip install "envctl==0.1.0"' in runs
    assert "envctl matrix check --matrix m.yaml" in runs
    assert any("envctl certify" in r and "--matrix m.yaml" in r for r in runs)
    job = doc["jobs"]["certify"]  # actions see paths from the checkout's root
    assert job["strategy"]["matrix"]["include"][0]["lock"] == "ml/locks/a.conda-lock.yml"
    assert "ml/certs/${{ matrix.target }}.json" in text and "report_paths: ml/reports/" in text
    assert job["env"]["RATTLER_CACHE_DIR"] == "${{ github.workspace }}/ml/.envctl/cache/rattler"
    result = runner.invoke(app, ["ci", "github", "--matrix", str(path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / ".github" / "workflows" / "certify.yml").exists()  # where GitHub reads workflows


def test_bad_input_is_a_clean_error(matrix, tmp_path):
    result = runner.invoke(app, ["ci", "github", "--matrix", str(matrix), "--gpu-label", "gpu; rm -rf /", "--out", "-"])
    assert result.exit_code == 2 and "runner label" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["ci", "github", "--matrix", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_committed_workflow_is_generated_from_the_shipped_matrix():
    committed = REPO / ".github" / "workflows" / "certify.yml"
    expected = ci.github_workflow(REPO / "envs" / "matrix.yaml")
    assert committed.read_text() == expected, "regenerate it: envctl ci github"


def test_committed_workflow_is_byte_identical_when_the_command_regenerates_it(tmp_path):
    # The workflow is rendered from templates/github-workflow.yml.j2; the committed file is the
    # reference bytes (comments, quoting, blank lines, trailing newline), through the written file.
    committed = (REPO / ".github" / "workflows" / "certify.yml").read_bytes()
    out = tmp_path / "certify.yml"
    result = runner.invoke(app, ["ci", "github", "--matrix", str(REPO / "envs" / "matrix.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == committed, "regenerate it: envctl ci github"
    assert ci.github_workflow(REPO / "envs" / "matrix.yaml").encode() == committed


def test_matrix_values_are_written_as_data_never_read_as_template(tmp_path):
    path = tmp_path / "envs" / "matrix.yaml"
    path.parent.mkdir()
    description = 'has << wf.install >>, <% if x %>, {{ jinja }}, ${{ secrets.TOKEN }} and "quotes"\n  over two lines'
    targets = {"a.b_c-1": cpu(["linux-64", "osx-64"], description=description),
               "cuda.12": cuda(["linux-aarch64", "win-64"], xfail="known: no driver")}
    path.write_text(yaml.safe_dump({"version": 1, "targets": targets}, sort_keys=False))
    for extra, runners in [((), ["ubuntu-24.04-arm", "windows-latest"]),
                           (("--gpu-label", "gpu.x_1"), [["self-hosted", "Linux", "ARM64", "gpu.x_1"],
                                                         ["self-hosted", "Windows", "X64", "gpu.x_1"]])]:
        text, doc = generate(path, *extra)
        comment = '# a.b_c-1 on osx-64: has << wf.install >>, <% if x %>, {{ jinja }}, ${{ secrets.TOKEN }} and "quotes" over two lines'
        assert "          " + comment in text.splitlines()
        include = doc["jobs"]["certify"]["strategy"]["matrix"]["include"]
        assert [(e["target"], e["platform"]) for e in include] == [
            ("a.b_c-1", "linux-64"), ("a.b_c-1", "osx-64"), ("cuda.12", "linux-aarch64"), ("cuda.12", "win-64")]
        assert [e["runner"] for e in include] == ["ubuntu-latest", "macos-15-intel", *runners]
        assert [e["lock"] for e in include][-1] == "locks/cuda.12.conda-lock.yml"
        assert '          - target: "cuda.12"' in text.splitlines()  # quoted, as every matrix value


def test_a_line_break_in_a_bare_value_is_refused_before_writing(tmp_path):
    # The matrix path is written unquoted into `run:` lines and the header; a line break there
    # would add YAML of the file name's choosing.
    path = tmp_path / "m\n  evil: true.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "targets": {"a": cpu(["linux-64"])}}))
    out = tmp_path / "certify.yml"
    result = runner.invoke(app, ["ci", "github", "--matrix", str(path), "--out", str(out)])
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
    (wheel,) = (tmp_path / "dist").glob("envctl-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("envctl/suite/templates/")}
    folder = REPO / "src" / "envctl" / "suite" / "templates"
    templates = {f"envctl/suite/templates/{p.name}" for p in folder.glob("*.j2")}
    assert f"envctl/suite/templates/{ci.TEMPLATE}" in templates and shipped == templates
