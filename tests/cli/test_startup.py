"""What a command pays at start-up, checked on the real CLI in a subprocess (tests/support/cliprobe.py).

* A no-op `envctl create` (the env matches its lock) imports neither pydantic
  (Typer's adapters) nor conda-lock nor rattler, and starts no process.
* `certify` and `export` start exactly one interpreter, the smoke runner, and
  never import torch, onnx or onnxruntime in envctl's own process: the
  versions and the GPU question are the runner's to answer (its "placement").
* envctl's own option conversion (cli/coercion.py) gives every command the
  values Typer's pydantic conversion gives.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.cliprobe import EXPORT_STACK, HEAVY_HOST, loaded, probe
from support.project import pip_target, write_project


@pytest.fixture(scope="module")
def unchanged_env(tmp_path_factory, local_channel) -> tuple[Path, Path]:
    """(root, matrix) of a project whose target is rendered and really locked (rattler + uv, no env built),
    with an env at the default prefix that create's no-op check accepts: the state file create writes
    last, naming this lock's sha256, and a bin/python. Building a real env would make this test slow;
    what the no-op path reads is exactly these two things (the test fails if create starts building)."""
    from envctl.core.hashing import sha256_file
    from envctl.core.paths import default_prefix
    from envctl.lock.lockfile import lock_path
    from envctl.create.verify import STATE_FILE
    from envctl.lock.render import render_target
    from envctl.lock.solve import lock_target
    from envctl.matrix.loader import load_matrix

    root = tmp_path_factory.mktemp("noop")
    matrix = write_project(root, {"fresh": pip_target(local_channel)})
    target = load_matrix(matrix).targets["fresh"]
    render_target(root, target, matrix)
    lock_target(root, target)
    prefix = default_prefix(root, target)
    (prefix / STATE_FILE).parent.mkdir(parents=True)
    (prefix / "bin").mkdir()
    (prefix / "bin" / "python").symlink_to(sys.executable)
    (prefix / STATE_FILE).write_text(json.dumps({
        "lock_sha256": sha256_file(lock_path(root, target)), "target": "fresh", "packages": {"conda": 0, "pip": 0},
        "python_version": "%d.%d.%d" % sys.version_info[:3], "size_bytes": 0, "own_bytes": 0}))
    return root, matrix


def test_noop_create_imports_no_pydantic_conda_lock_or_rattler(unchanged_env, tmp_path):
    root, matrix = unchanged_env
    for args in (["create", "--target", "fresh", "--no-certify", "--matrix", str(matrix)],
                 ["create", "fresh", "--no-certify", "--json"]):  # positional target, default matrix, JSON out
        proc, report = probe(args, root, tmp_path / "report.json", timeout=60)
        assert report["exit_code"] == 0, proc.stderr
        assert "already matches its lock" in proc.stdout or '"unchanged"' in proc.stdout, proc.stdout
        assert loaded(report, HEAVY_HOST) == [], f"the no-op path imported {loaded(report, HEAVY_HOST)}"
        assert report["processes"] == [], "the no-op path started a process"


def test_version_and_a_bad_option_stay_light(tmp_path):
    proc, report = probe(["--version"], tmp_path, tmp_path / "version.json", timeout=60)
    assert report["exit_code"] == 0 and proc.stdout.startswith("envctl ")
    assert loaded(report, (*HEAVY_HOST, "rich")) == []
    # A value Typer must convert, refused without pydantic: the same clean usage error.
    proc, report = probe(["create", "--target", "x", "--timeout", "soon"], tmp_path, tmp_path / "bad.json", timeout=60)
    assert report["exit_code"] == 2 and "'soon' is not a valid integer" in proc.stderr, proc.stderr
    assert loaded(report, HEAVY_HOST) == []


def _sample_args(command) -> list[list[str]]:
    """Two command lines per command: every option and argument given (lists twice), and none."""
    given: list[str] = []
    for param in command.params:
        if param.name == "help" or getattr(param, "is_flag", False) or getattr(param, "count", False):
            continue
        annotation = param.type_descriptor.annotation
        value = "7" if annotation is int or str(annotation).endswith("[int]") else "some/path"
        if param.param_type_name == "argument":
            given += [value, "other"] if param.nargs == -1 else [value]
        else:
            given += [param.opts[0], value] + ([param.opts[0], "more"] if param.multiple else [])
    return [given, []]


def _parse_everything(app) -> dict[str, str]:
    from typer.main import get_command

    out = {}

    def walk(command, path):
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])
        if getattr(command, "commands", None):
            return
        for args in _sample_args(command):
            try:
                out[f"{' '.join(path)} {args}"] = repr(sorted(command.make_context(path[-1], list(args)).params.items()))
            except Exception as exc:  # a missing required argument: the same error either way
                out[f"{' '.join(path)} {args}"] = type(exc).__name__
    group = get_command(app)
    walk(group, ["envctl"])
    out["envctl -vv"] = repr(sorted(group.make_context("envctl", ["-vv", "create"]).params.items()))
    return out


def test_plain_conversion_gives_what_typers_own_gives(monkeypatch):
    from typer import core

    from envctl.cli.app import app  # installs envctl's conversion

    plain = core._TyperParameter.get_runtime_param
    assert getattr(plain, "envctl_plain", False), "cli.coercion.install() did not take: pydantic is back on every command"
    mine = _parse_everything(app)
    monkeypatch.setattr(core._TyperParameter, "get_runtime_param", plain.typer_original)
    typers = _parse_everything(app)
    assert len(mine) > 30 and mine == typers


def _runner_env_module():
    from envctl.smoke import RUNNER_PATH

    spec = importlib.util.spec_from_file_location("envctl_smoke_runner_for_placement", RUNNER_PATH)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    return runner._load_sibling("envctl_smoke_env")


@pytest.mark.parametrize("cuda, device, providers", [
    (True, "cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    (False, "cpu", ["CPUExecutionProvider"]),
])
def test_the_runner_settles_device_auto(tmp_path, cuda, device, providers):
    env = _runner_env_module()
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"spec_version": 1, "device": "auto",
                                     "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}))
    spec = env.load_spec(str(spec_file), str(tmp_path / "result.json"))
    placement = env.resolve_placement(spec, {"cuda_available": cuda})
    assert placement == {"device": device, "providers": providers, "required_provider": providers[0]}
    assert (spec["device"], spec["required_provider"]) == (device, providers[0])  # what the stages then use
    spec_file.write_text(json.dumps({"spec_version": 1, "device": "gpu"}))
    with pytest.raises(env.SpecError, match="device"):
        env.load_spec(str(spec_file), str(tmp_path / "result.json"))


@pytest.mark.slow
def test_export_starts_one_interpreter_and_never_imports_torch_itself(tmp_path):
    """`envctl export` in the current interpreter: the runner is the only process; the versions line and
    the device come from its result (this used to start a second python that imported torch and ORT)."""
    out = tmp_path / "cnn.onnx"
    proc, report = probe(["export", "cnn", "--out", str(out), "--exporter", "torchscript", "--json"], tmp_path,
                         tmp_path / "export.json", timeout=900)
    assert report["exit_code"] == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    import torch

    assert result["status"] == "passed" and result["versions"]["torch"] == torch.__version__ and out.exists()
    assert loaded(report, EXPORT_STACK) == [], f"envctl's own process imported {loaded(report, EXPORT_STACK)}"
    (runner,) = report["processes"]
    assert runner[-3].endswith("runner.py"), report["processes"]


@pytest.mark.slow
def test_certify_host_starts_one_interpreter_and_records_the_runners_placement(tmp_path, local_channel):
    write_project(tmp_path, {"one": pip_target(local_channel, models=["cnn"])})  # host certifies the matrix's models
    proc, report = probe(["certify", "--target", "host"], tmp_path, tmp_path / "certify.json", timeout=1200)
    assert report["exit_code"] == 0, proc.stdout + proc.stderr
    assert loaded(report, EXPORT_STACK) == [], f"envctl's own process imported {loaded(report, EXPORT_STACK)}"
    assert len(report["processes"]) == 1 and report["processes"][0][-3].endswith("runner.py"), report["processes"]
    cert = json.loads((tmp_path / "certs" / "host.json").read_text())
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert cert["result"] == "passed" and cert["versions"]["torch"] == torch.__version__
    assert cert["spec"]["device"] == device and cert["spec"]["required_provider"] == cert["spec"]["providers"][0]
    assert cert["spec"]["models"] == ["cnn"]


@pytest.mark.slow
def test_a_torchscript_only_run_reports_onnxscript_without_importing_it(tmp_path):
    """The runner's versions stage: onnxscript's version from its metadata unless dynamo will import it anyway."""
    from envctl.smoke import RUNNER_PATH

    code = ("import importlib.util, json, sys; "
            f"spec = importlib.util.spec_from_file_location('r', {str(RUNNER_PATH)!r}); r = importlib.util.module_from_spec(spec); "
            "spec.loader.exec_module(r); E = r._load_sibling('envctl_smoke_env'); out = {}; "
            "details = {}; E.versions_stage(details, {'exporters': sys.argv[1].split(','), 'expected_versions': {}, 'device': 'cpu'}); "
            "print(json.dumps([details['versions']['onnxscript'], 'onnxscript' in sys.modules]))")
    import onnxscript

    for exporters, imported in (("torchscript", False), ("torchscript,dynamo", True)):
        done = subprocess.run([sys.executable, "-I", "-c", code, exporters], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.splitlines()[-1]) == [onnxscript.__version__, imported]
