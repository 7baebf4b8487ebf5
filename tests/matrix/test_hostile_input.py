"""Bad and hostile input: envctl accepts it or refuses it clearly, never crashes, never writes outside the project.

* Property-based (hypothesis): random matrix documents, raw YAML-ish text and
  version specs go through the loader, the rules, rendering and the CLI;
  only EnvctlError (exit 2, or 1 for a failed check) may come out.
* Target names and project folders that point elsewhere (`..`, absolute
  names, symlinks committed into the project) never lead to a write outside.
* YAML is only ever safe-loaded (checked in the source and at run time).
* Lockfiles whose hashes or URLs were altered are refused at create.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from envctl.cli.exitcodes import exit_code
from envctl.cli import app
from envctl.create.build import create_env
from envctl.core.atomic import SAFE_NAME
from envctl.core.errors import EnvctlError
from envctl.core.limits import control_char
from envctl.matrix.fields import TARGET_FIELDS
from envctl.lock.lockfile import read_lock_meta
from envctl.matrix.loader import AXIS_KEYS, TOP_LEVEL_KEYS, load_matrix
from envctl.host.platform import host_platform
from envctl.lock.render import render_text
from envctl.rules.api import check_target
from envctl.matrix.versions import Spec, SpecError
from support import lockfactory as lf
from support.local_channel import channel_version
from support import broken_locks

SRC = Path(__file__).resolve().parents[2] / "src" / "envctl"
needs_linux64 = pytest.mark.skipif(host_platform() != "linux-64", reason="the local channel's real python is linux-64 only")
runner = CliRunner()
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

# ---------------------------------------------------------------- strategies

KEYS = sorted(set(TOP_LEVEL_KEYS) | set(TARGET_FIELDS) | set(AXIS_KEYS) | {"reason", "source", "index_url", "find_links"})
NASTY_TEXT = ["*", "3.11", "2.13.0", "2.4rc1", "58c", ">=1.16,<1.18", "==1.17.*", "~=1", "===1.0", ">=", "1.0|2.0",
              "linux-64", "osx-arm64", "torchscript", "dynamo", "cnn", "a:b", ":", "11.8", "none", "gpu", "cpu",
              "{torch}", "x-{opset}", "{0}", "{torch!r}", "{nope}", "../x", "/abs", "..", "x/y", "", " ", "\0",
              "2001-13-40", "!!python/object/apply:os.system", "conda-forge", "file:///nonexistent",
              # issue 12: smuggled lines and control characters, huge format widths
              "six\n--extra-index-url http://evil.invalid", "a\n", "a\r", "\x1b[31m", "a\u2028b", "a\x85", "\t",
              "t{torch:>3000000000}", "{torch:{opset}}", "{opset:099999999d}", "-e .", "--index-url=http://x"]
CONTROL = st.text(alphabet=st.characters(categories=("Cc",), include_characters="\u2028\u2029"), min_size=1, max_size=3)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**20), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=16), st.sampled_from(NASTY_TEXT),
    st.builds(lambda a, c, b: a + c + b, st.sampled_from(["", "a", "2.4", "cnn", "t"]), CONTROL, st.sampled_from(["", "x", "\n"])),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(0, 3))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
                      max_leaves=20)
fields_map = st.dictionaries(st.sampled_from(sorted(TARGET_FIELDS)), values, max_size=8)
axes_group = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.sampled_from(["t-{torch}", "x{opset}", "{nope}", "{0}", "{torch!r}", "../{torch}"]), values,
                      st.from_regex(r"\At\{(torch|opset)(![rsa])?:[<>^=]?[+ -]?0?[0-9]{1,12}(\.[0-9]{1,10})?[sdf]?\}\Z")),
    "base": st.one_of(fields_map, values),
    "product": st.one_of(st.dictionaries(st.sampled_from(sorted(TARGET_FIELDS)), st.lists(values, max_size=3), max_size=3), values),
    "zip": st.one_of(st.lists(st.dictionaries(st.sampled_from(sorted(TARGET_FIELDS)), st.lists(values, max_size=3), max_size=2), max_size=2), values),
    "exclude": st.one_of(st.lists(st.dictionaries(st.one_of(st.sampled_from(["reason", "source", "torch", "opset"]), keys), values, max_size=4), max_size=2), values),
})
random_docs = st.fixed_dictionaries({}, optional={
    "version": st.one_of(st.just(1), values),
    "defaults": st.one_of(fields_map, values),
    "targets": st.one_of(st.dictionaries(st.one_of(st.text(max_size=10), st.sampled_from(["a", "..", "x/y", "/abs", "a\n", "a~old-1", "b\r"])),
                                         st.one_of(fields_map, values), max_size=3), values),
    "axes": st.one_of(st.lists(axes_group, max_size=2), values),
}).flatmap(lambda doc: st.dictionaries(keys, values, max_size=2).map(lambda extra: {**extra, **doc}) | st.just(doc))

# Near-valid documents reach the rules and the renderer: a working target with a few fields replaced or dropped.
VALID = {"platforms": ["linux-64"], "channels": ["conda-forge"], "python": "3.11", "torch": "2.4", "onnx": "*",
         "onnxruntime": "1.19", "protobuf": "*", "opset": 17, "exporters": ["torchscript"]}
spec_text = st.one_of(st.sampled_from(NASTY_TEXT), st.text(alphabet="0123456789.*<>=!~,+ abcrdevpostl|", max_size=14))
near_valid_docs = st.builds(
    lambda changes, dropped, name: {"version": 1, "targets": {name: {k: v for k, v in {**VALID, **changes}.items() if k not in dropped}}},
    st.dictionaries(st.sampled_from(sorted(TARGET_FIELDS)), st.one_of(spec_text, values), max_size=3),
    st.lists(st.sampled_from(sorted(VALID)), max_size=2),
    st.sampled_from(["t", "cpu-1", "a.b_c"]),
)
YAML_TOKENS = list("ab1.: -[]{},#&*!|>'\"%@`?\n\t") + ["targets", "axes", "defaults", "!!int", "!!float", "!!timestamp",
                                                       "2001-13-40", "&a", "*a", "<<", "\n  ", "!!python/name:os.system"]
yamlish_text = st.lists(st.sampled_from(YAML_TOKENS), max_size=60).map("".join)


def _write(doc_or_text, folder: Path) -> Path:
    path = folder / "envs" / "matrix.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc_or_text if isinstance(doc_or_text, str) else yaml.safe_dump(doc_or_text, sort_keys=False, allow_unicode=True))
    return path


def _load_check_render(path: Path) -> None:
    """Only EnvctlError may leave the loader, the rules or the renderer."""
    try:
        matrix = load_matrix(path)
    except EnvctlError as exc:
        assert exit_code(exc) == 2 and str(exc).strip() and exc.file == str(path)
        return
    for target in matrix.targets.values():
        assert SAFE_NAME.fullmatch(target.name), target.name
        data = target.to_json()
        for key in ("description", "xfail"):  # free text may span lines (its writers fold or quote it)
            assert control_char(data.pop(key) or "", "\n\t") is None, repr(target)
        _assert_no_control(data)
        check_target(target)
        render_text(target, path)


def _assert_no_control(node) -> None:
    """Whatever loads reaches files, command lines and YAML: no string in it may carry a control character."""
    if isinstance(node, str):
        assert control_char(node) is None, repr(node)
    elif isinstance(node, dict):
        for key, value in node.items():
            _assert_no_control(key)
            _assert_no_control(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _assert_no_control(value)


def _aliased_text(levels: int, width: int, where: str, tail: str) -> str:
    """A matrix whose aliases nest `levels` deep and `width` wide (anchored in exclude entries), used at `where`."""
    chain = ["      - reason: &b0 [lol]", "        source: s"]
    for i in range(1, levels + 1):
        chain += [f"      - reason: &b{i} [{', '.join(f'*b{i - 1}' for _ in range(width))}]", "        source: s"]
    return "\n".join(["version: 1", "axes:", "  - name: t{torch}", "    base:", f"      {where}: *b{levels}",
                      "    product:", f"      torch: {tail}", "    exclude:", *chain]) + "\n"


# ---------------------------------------------------------------- properties


@PROPERTY
@given(random_docs)
def test_random_matrix_documents_load_or_refuse_cleanly(doc):
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = _write(doc, Path(tmp))
        except yaml.YAMLError:
            return
        _load_check_render(path)


@PROPERTY
@given(near_valid_docs)
def test_near_valid_matrices_load_or_refuse_cleanly(doc):
    with tempfile.TemporaryDirectory() as tmp:
        _load_check_render(_write(doc, Path(tmp)))


@PROPERTY
@given(yamlish_text)
def test_raw_yamlish_text_loads_or_refuses_cleanly(text):
    with tempfile.TemporaryDirectory() as tmp:
        _load_check_render(_write(text, Path(tmp)))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(1, 12), st.integers(1, 40), st.sampled_from(["opset", "description", "pip_extra"]),
       st.sampled_from(['["2.4"]', '["2.4", "2.5"]']))
def test_alias_documents_load_or_refuse_cleanly(levels, width, where, tail):
    """Aliases at any depth and width: loaded, or refused by the expansion budget, never expanded in full."""
    with tempfile.TemporaryDirectory() as tmp:
        _load_check_render(_write(_aliased_text(levels, width, where, tail), Path(tmp)))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.from_regex(r"\At[a-z]{0,3}\{(torch|opset)(![rsa])?:.?[<>^=]?[+ -]?#?0?[0-9]{1,12},?(\.[0-9]{1,12})?[a-zA-Z%]?\}\Z"))
def test_format_widths_in_name_templates_are_refused_cleanly(template):
    doc = {"version": 1, "defaults": VALID, "axes": [{"name": template, "product": {"torch": ["2.4"], "opset": [17]}}]}
    with tempfile.TemporaryDirectory() as tmp:
        with pytest.raises(EnvctlError, match=r"name template|control characters are not allowed"):
            load_matrix(_write(doc, Path(tmp)))


@settings(max_examples=500, deadline=None)
@given(st.one_of(spec_text, st.text(max_size=20), st.integers(), st.floats(), st.none(), st.booleans()))
def test_version_specs_parse_or_refuse_cleanly(raw):
    try:
        spec = Spec.parse(raw)
    except SpecError as exc:
        assert str(exc)
        return
    # An accepted spec has both spellings and can judge versions.
    assert isinstance(spec.pip(), str) and isinstance(spec.conda(), str)
    spec.exact  # noqa: B018 - must not raise
    spec.contains("1.0")
    spec.contains("2.13.0+cpu")
    assert Spec.parse(str(spec)).pip() == spec.pip() or spec.is_any


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(random_docs, near_valid_docs, yamlish_text))
def test_cli_on_generated_matrices_never_shows_a_traceback(doc):
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = _write(doc, Path(tmp))
        except yaml.YAMLError:
            return
        for args in (["matrix", "check"], ["matrix", "show", "--json"], ["render", "--all"]):
            result = runner.invoke(app, [*args, "--matrix", str(path)])
            assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.output)
            assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
            assert "Traceback" not in result.output
            if result.exit_code == 2:
                assert "envctl:" in result.output and str(path) in result.output, result.output
        written = {p.relative_to(tmp).as_posix() for p in Path(tmp).rglob("*") if p.is_file()}
        assert all(name.startswith("envs/") for name in written), written


@pytest.mark.parametrize(
    "text",
    [
        "targets: !!python/object/apply:os.system ['touch {marker}']\n",
        "targets:\n  x: !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n",
        "a: 2001-13-40\n",
        "a: !!int 'x'\n",
        "a: !!float 'x'\n",
        "a: !!timestamp x\n",
        "a: !!float\n",
        "[" * 5000 + "\n",
        "a: &a [*a]\n",
    ],
    ids=["os.system", "Popen", "impossible-date", "bad-int", "bad-float", "bad-timestamp", "empty-float", "deep-nesting",
         "recursive-alias"],
)
def test_hostile_yaml_is_refused_with_exit_2(tmp_path, text):
    marker = tmp_path / "pwned"
    path = _write(text.format(marker=marker), tmp_path)
    result = runner.invoke(app, ["matrix", "show", "--matrix", str(path)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "malformed YAML" in result.output or "unknown key" in result.output, result.output
    assert not marker.exists()


def test_anchor_bomb_axes_are_refused_without_expanding(tmp_path):
    ten = json.dumps([f"1.{i}" for i in range(10)])
    path = _write(
        "defaults: {platforms: [linux-64], channels: [c], python: '3.11', onnx: '*', onnxruntime: '*', protobuf: '*', exporters: [torchscript]}\n"
        "axes:\n  - name: 't{torch}-{opset}-{numpy}-{description}-{xfail}-{onnxscript}-{cudnn}'\n    product:\n"
        f"      torch: &ten {ten}\n      opset: [7, 8, 9, 10, 11, 12, 13, 14, 15, 16]\n"
        "      numpy: *ten\n      description: *ten\n      xfail: *ten\n      onnxscript: *ten\n      cudnn: *ten\n",
        tmp_path,
    )
    # Counted, never expanded: expanding would need gigabytes, so the child runs under a 1 GiB address-space limit
    # (and a generous ceiling: an expansion would exceed it, a count takes well under it).
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    proc = subprocess.run([sys.executable, "-m", "envctl", "matrix", "show", "--matrix", str(path)],
                          capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert proc.returncode == 2 and "10000000 combinations" in proc.stderr + proc.stdout, proc.stdout + proc.stderr


# ---------------------------------------------------------------- YAML is only ever safe-loaded

UNSAFE_NAMES = {"unsafe_load", "unsafe_load_all", "full_load", "full_load_all", "Loader", "FullLoader", "UnsafeLoader",
                "CLoader", "CFullLoader", "CUnsafeLoader", "UnsafeConstructor", "FullConstructor", "Constructor"}
SAFE_LOADERS = {"yaml.SafeLoader", "yaml.CSafeLoader", "getattr(yaml, 'CSafeLoader', yaml.SafeLoader)", "_LineLoader"}


def _yaml_names(tree: ast.AST) -> tuple[set[str], dict[str, str]]:
    """Names bound to the yaml module (`import yaml as y`) and to its members (`from yaml import load as l`)."""
    modules, members = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "yaml" or alias.name.startswith("yaml."):
                    modules.add(alias.asname or "yaml")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "yaml":
            for alias in node.names:
                members[alias.asname or alias.name] = alias.name
    return modules, members


def _unsafe_yaml_uses(file: Path) -> list[str]:
    """Every unsafe loader a module can reach, however yaml was imported."""
    tree = ast.parse(file.read_text(encoding="utf-8"))
    modules, members = _yaml_names(tree)
    # Names bound to a safe loader in this module (`loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)`).
    safe_shapes = {shape.replace("yaml", m) for shape in SAFE_LOADERS for m in modules | {"yaml"}}
    safe_shapes |= {name for name, real in members.items() if real in ("SafeLoader", "CSafeLoader")}
    safe_names = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign) and ast.unparse(node.value) in safe_shapes
                  for t in node.targets if isinstance(t, ast.Name)}
    problems = []
    where = lambda node: f"{file.name}:{node.lineno}"  # noqa: E731
    for name, real in members.items():
        if real in UNSAFE_NAMES | {"load", "load_all", "*"}:
            problems.append(f"{file.name}: from yaml import {real}" + (f" as {name}" if name != real else ""))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules \
                and node.attr in UNSAFE_NAMES:
            problems.append(f"{where(node)}: {node.value.id}.{node.attr}")
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(b) for b in node.bases]
            loaders = [b for b in bases if "Loader" in b]
            if loaders and not set(loaders) <= safe_shapes | {"SafeLoader", "CSafeLoader"} | {
                    f"{m}.{n}" for m in modules for n in ("SafeLoader", "CSafeLoader")}:
                problems.append(f"{where(node)}: loader class {node.name}({', '.join(bases)})")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) \
                and node.func.value.id in modules and node.func.attr in ("load", "load_all"):
            loader = next((k.value for k in node.keywords if k.arg == "Loader"), node.args[1] if len(node.args) > 1 else None)
            shown = ast.unparse(loader) if loader is not None else None
            if shown not in safe_shapes and shown not in safe_names:
                problems.append(f"{where(node)}: {node.func.value.id}.{node.func.attr}(..., Loader={shown})")
    return problems


def test_yaml_is_only_ever_safe_loaded_in_the_source():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 10
    problems = [p for file in files for p in _unsafe_yaml_uses(file)]
    assert problems == [], problems


@pytest.mark.parametrize("snippet", [
    "import yaml as y\ny.unsafe_load(text)",
    "import yaml as y\ny.load(text, Loader=y.Loader)",
    "from yaml import unsafe_load as ul\nul(text)",
    "from yaml import load\nload(text)",
    "import yaml\nyaml.load(text, Loader=yaml.FullLoader)",
    "import yaml as y\nclass L(y.UnsafeLoader):\n    pass",
])
def test_the_source_scan_sees_through_aliases(tmp_path, snippet):
    file = tmp_path / "mod.py"
    file.write_text(snippet + "\n")
    assert _unsafe_yaml_uses(file), snippet
    file.write_text("import yaml as y\ny.load(text, Loader=getattr(y, 'CSafeLoader', y.SafeLoader))\ny.safe_load(text)\n")
    assert _unsafe_yaml_uses(file) == []


@pytest.fixture()
def unsafe_yaml_loaders_raise(monkeypatch):
    """Every YAML loader that can build Python objects (Full, Unsafe, the plain Loader, their C twins) raises.

    They all construct through FullConstructor; SafeLoader does not. Uses are recorded too, in case envctl
    turns the exception into an error message.
    """
    used: list[str] = []

    def refuse(self, *args, **kwargs):
        used.append(type(self).__name__)
        raise AssertionError(f"unsafe YAML loader {type(self).__name__} used")

    monkeypatch.setattr(yaml.constructor.FullConstructor, "__init__", refuse, raising=False)
    with pytest.raises(AssertionError):
        yaml.load("a: 1", Loader=yaml.Loader)  # noqa: S506 - the trap works
    used.clear()
    return used


@pytest.mark.slow
@needs_linux64
def test_whole_commands_load_yaml_only_safely(unsafe_yaml_loaders_raise, shared_project, aarch64_certified,
                                              tmp_path, local_channel, wheels):
    """By behaviour: every command that reads YAML (matrix, environment.yml, locks, certificates) runs
    with the unsafe loaders booby-trapped, however the source spells its imports."""
    used = unsafe_yaml_loaders_raise
    root, matrix = shared_project
    m = ["--matrix", str(matrix)]
    commands = [["matrix", "show", *m], ["matrix", "check", *m], ["lock", "--check", "--all", *m],
                ["lock", "aarch64-only", *m], ["status", "--json", *m], ["certify", "--target", "aarch64-only", *m],
                ["env", "export", "--target", "aarch64-only", "--platform", "linux-aarch64", *m],
                ["report", "--html", str(tmp_path / "r.html"), *m], ["doctor", "--json", *m],
                ["ci", "github", "--out", "-", "--install", "./tools/envctl", *m]]
    (tmp_path / "render").mkdir()
    _, fresh, _ = _project(tmp_path / "render")
    commands.append(["render", "--all", "--matrix", str(fresh)])
    for args in commands:
        result = runner.invoke(app, args)
        assert "Traceback" not in result.output and result.exit_code in (0, 1), (args, result.output)
        assert used == [], (args, used)
    # create reads the lock (and its cached plan) too
    project = tmp_path / "victim"
    _lock(project, local_channel, wheels)
    assert create_env(project, "victim", prefix=tmp_path / "env").action == "created"
    assert used == []


def test_the_line_aware_loader_is_a_safe_loader():
    from envctl.core.yamlsource import _LineLoader

    assert issubclass(_LineLoader, yaml.SafeLoader)
    assert not issubclass(_LineLoader, yaml.FullLoader)


def test_lock_and_environment_files_are_safe_loaded(tmp_path):
    from envctl.lock.solve import _read_spec

    marker = tmp_path / "pwned"
    payload = f"!!python/object/apply:os.system ['touch {marker}']"
    lock = broken_locks.write(tmp_path / "x.conda-lock.yml", f"version: 1\nmetadata: {payload}\npackage: []\n")
    with pytest.raises(EnvctlError):
        read_lock_meta(lock)
    env = tmp_path / "environment.yml"
    env.write_text(f"name: {payload}\n")
    with pytest.raises(EnvctlError):
        _read_spec(env, env.read_text())
    assert not marker.exists()


# ---------------------------------------------------------------- names and paths that point outside


def _project(tmp_path: Path, targets: dict | None = None) -> tuple[Path, Path, Path]:
    """root/ (the project) and outside/ (a folder beside it that must stay empty)."""
    root, outside = tmp_path / "project", tmp_path / "outside"
    outside.mkdir()
    targets = targets or {"t": {"platforms": ["linux-aarch64"], "channels": ["file:///nonexistent"], "python": "3.11",
                                "torch": "2.4", "onnx": "*", "onnxruntime": "*", "protobuf": "*", "opset": 17,
                                "exporters": ["torchscript"]}}
    path = root / "envs" / "matrix.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({"version": 1, "targets": targets}))
    return root, path, outside


def _everything_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.mark.parametrize("name", ["..", "../x", "../../etc", "/abs", "/tmp/x", "a/../../x", "x/y", ".hidden", "a\\b", "-rf", "a" * 81])
def test_target_names_that_escape_are_refused(tmp_path, name):
    target = {"platforms": ["linux-64"], "channels": ["c"], "python": "3.11", "torch": "2.4", "onnx": "*",
              "onnxruntime": "*", "protobuf": "*", "opset": 17, "exporters": ["torchscript"]}
    root, matrix, outside = _project(tmp_path, {name: target})
    before = _everything_under(tmp_path)
    result = runner.invoke(app, ["render", "--all", "--matrix", str(matrix)])
    assert result.exit_code == 2 and "is not allowed" in result.output, result.output
    assert _everything_under(tmp_path) == before


def test_axes_name_template_that_escapes_is_refused(tmp_path):
    root, matrix, outside = _project(tmp_path)
    matrix.write_text(
        "defaults: {platforms: [linux-64], channels: [c], python: '3.11', onnx: '*', onnxruntime: '*', protobuf: '*', "
        "opset: 17, exporters: [torchscript]}\n"
        "axes:\n  - name: '../../outside/{description}'\n    product:\n      torch: ['2.4']\n      description: ['x']\n"
    )
    result = runner.invoke(app, ["render", "--all", "--matrix", str(matrix)])
    assert result.exit_code == 2 and "'../../outside/x' is not allowed" in result.output, result.output
    assert _everything_under(outside) == []


def test_unknown_target_on_the_command_line_is_not_a_path(tmp_path):
    root, matrix, outside = _project(tmp_path)
    for args in (["render", "../outside/t"], ["lock", "../outside/t"], ["create", "--target", "../outside/t"],
                 ["certify", "--target", "../outside/t"]):
        result = runner.invoke(app, [*args, "--matrix", str(matrix)])
        assert result.exit_code == 2 and "unknown target" in result.output, (args, result.output)
    assert _everything_under(outside) == []


def test_rendering_through_a_symlinked_target_folder_is_refused(tmp_path):
    root, matrix, outside = _project(tmp_path)
    (root / "envs" / "t").symlink_to(outside, target_is_directory=True)
    result = runner.invoke(app, ["render", "t", "--matrix", str(matrix)])
    assert result.exit_code == 2, result.output
    assert "outside the project" in result.output, result.output
    assert _everything_under(outside) == []


def test_rendering_over_a_symlinked_file_replaces_the_link_not_its_target(tmp_path):
    root, matrix, outside = _project(tmp_path)
    victim = outside / "precious.txt"
    victim.write_text("keep me\n")
    (root / "envs" / "t").mkdir()
    (root / "envs" / "t" / "environment.yml").symlink_to(victim)
    result = runner.invoke(app, ["render", "t", "--matrix", str(matrix)])
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "keep me\n"
    assert not (root / "envs" / "t" / "environment.yml").is_symlink()


@pytest.mark.parametrize("link", ["locks", "lockfile"])
def test_locking_through_a_symlink_out_of_the_project_is_refused(tmp_path, link):
    root, matrix, outside = _project(tmp_path)
    assert runner.invoke(app, ["render", "t", "--matrix", str(matrix)]).exit_code == 0
    if link == "locks":
        (root / "locks").symlink_to(outside, target_is_directory=True)
    else:
        (root / "locks").mkdir()
        (outside / "victim.yml").write_text("keep me\n")
        broken_locks.declare(root / "locks" / "t.conda-lock.yml").symlink_to(outside / "victim.yml")
    before = _everything_under(outside)
    # Refused before solving (the channel does not even exist).
    result = runner.invoke(app, ["lock", "t", "--matrix", str(matrix)])
    assert result.exit_code == 2, result.output
    assert "outside the project" in result.output and "lock file" in result.output, result.output
    assert _everything_under(outside) == before
    if link == "lockfile":
        assert (outside / "victim.yml").read_text() == "keep me\n"


def test_certificate_through_a_symlinked_certs_folder_is_refused(tmp_path, local_channel):
    # A lock-only target (another platform) certifies without an env: only the certificate is written.
    root, matrix, outside = _project(tmp_path)
    (root / "certs").symlink_to(outside, target_is_directory=True)
    result = runner.invoke(app, ["certify", "--target", "t", "--matrix", str(matrix)])
    assert result.exit_code == 2 and "outside the project" in result.output, result.output
    assert _everything_under(outside) == []


@pytest.mark.parametrize("link", [".envctl", ".envctl/envs"])
def test_env_through_a_symlinked_envctl_folder_is_refused(tmp_path, local_channel, link):
    root, outside = tmp_path / "project", tmp_path / "outside"
    outside.mkdir()
    lf.write_lock(root / "locks" / "small.conda-lock.yml", target="small", channel=local_channel,
                  platforms=[host_platform()], packages=[])
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    (root / link).symlink_to(outside, target_is_directory=True)
    with pytest.raises(EnvctlError, match="outside the project"):
        create_env(root, "small")
    assert _everything_under(outside) == []
    assert _everything_under(root / "locks") == ["small.conda-lock.yml"]


@pytest.mark.parametrize("name", ["../x", "../../outside/x", "/tmp/x", "a/b", ".."])
def test_create_api_refuses_names_that_are_paths(tmp_path, name):
    with pytest.raises(EnvctlError, match="is not allowed"):
        create_env(tmp_path / "project", name)
    assert not (tmp_path / "project").exists()


# ---------------------------------------------------------------- altered lockfiles are refused at create



@pytest.fixture(scope="module")
def wheels():
    """pip's resolution (its own configuration and indexes) of two versions of one small wheel."""
    return {v: lf.pip_report([f"six=={v}"])[0] for v in ("1.17.0", "1.16.0")}


def _lock(root: Path, channel: Path, wheels: dict, edit=None) -> Path:
    conda = lf.channel_entries(channel, "linux-64", ["python", "pip", "python_abi"])
    pip = lf.pip_entries([wheels["1.17.0"]], "linux-64")
    path = lf.write_lock(root / "locks" / "victim.conda-lock.yml", target="victim", channel=channel,
                         platforms=["linux-64"], packages=conda + pip)
    if edit:
        lf.edit_lock(path, edit)
    return path


def _entry(lock, name: str):
    return next(p for p in lock.package if p.name == name)


@pytest.mark.slow
@needs_linux64
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("pip url -> other version's wheel, original hash", r"six: the wheel's sha256 does not match the lock"),
        ("pip hash altered", r"six: the wheel's sha256 does not match the lock"),
        ("pip hash removed", r"six 1.17.0 has no sha256 in the lock"),
        ("conda url -> another package's archive, original hashes", r"pip {pip}: the channel's sha256 does not match the lock"),
        ("conda md5 altered, sha256 removed", r"pip {pip}: the channel's md5 does not match the lock"),
        ("conda url -> a look-alike channel, original hashes", r"pip {pip}: the channel's sha256 does not match the lock"),
    ],
)
def test_altered_lockfiles_are_refused_at_create(tmp_path, local_channel, wheels, case, expected):
    channel = local_channel
    expected = expected.replace("{pip}", re.escape(channel_version(channel, "pip")))  # the pip ensurepip bundles

    def edit(lock):
        pip_wheel, conda_pip = _entry(lock, "six"), _entry(lock, "pip")
        if case.startswith("pip url"):
            pip_wheel.url = wheels["1.16.0"]["url"]
        elif case == "pip hash altered":
            pip_wheel.hash.sha256 = "f" * 64
        elif case == "pip hash removed":
            pip_wheel.hash.sha256 = None
        elif case.startswith("conda url -> another"):
            conda_pip.url = _entry(lock, "python_abi").url
        elif case.startswith("conda md5"):
            conda_pip.hash.md5, conda_pip.hash.sha256 = "0" * 32, None
        elif case.startswith("conda url -> a look-alike"):
            # Same file names, its own consistent repodata, a different archive behind the pip name.
            fake = tmp_path / "lookalike"
            for subdir in ("noarch", "linux-64"):
                shutil.copytree(local_channel / subdir, fake / subdir)
            filename = conda_pip.url.rsplit("/", 1)[1]
            abi = _entry(lock, "python_abi").url.rsplit("/", 1)[1]
            shutil.copy(fake / "linux-64" / abi, fake / "noarch" / filename)
            repodata = json.loads((fake / "noarch" / "repodata.json").read_text())
            abi_record = json.loads((fake / "linux-64" / "repodata.json").read_text())["packages"][abi]
            repodata["packages"][filename].update(sha256=abi_record["sha256"], md5=abi_record["md5"], size=abi_record["size"])
            (fake / "noarch" / "repodata.json").write_text(json.dumps(repodata))
            conda_pip.url = f"{fake.as_uri()}/noarch/{filename}"

    root = tmp_path / "project"
    _lock(root, channel, wheels, edit)
    prefix = tmp_path / "env"
    with pytest.raises(EnvctlError, match=expected) as err:
        create_env(root, "victim", prefix=prefix)
    assert exit_code(err.value) in (1, 2)
    assert not prefix.exists()
    assert sorted(p.name for p in prefix.parent.iterdir() if p.name.startswith("env.")) in ([], ["env.lock"])
    # Broken on purpose: not one of the locks the session checks every parser reads (conftest.py).
    (root / "locks" / "victim.conda-lock.yml").unlink()


@pytest.mark.slow  # builds an env
@needs_linux64
def test_unaltered_lock_of_the_same_shape_is_accepted(tmp_path, local_channel, wheels):
    """The control for the cases above: the same lock, unaltered, creates."""
    root = tmp_path / "project"
    _lock(root, local_channel, wheels)
    result = create_env(root, "victim", prefix=tmp_path / "env")
    assert result.action == "created" and result.packages == {"conda": 3, "pip": 1}
