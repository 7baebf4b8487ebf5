"""Compatibility rules: one known-good and one known-bad combination per rule family.

The combinations come from docs/compatibility.md; each bad one asserts the
severity, the rule id and that the finding names a source.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envctl.rules import facts as F
from envctl.matrix.fields import PipOptions
from envctl.matrix.loader import Target, load_matrix
from envctl.rules.api import Finding, admitted, check_matrix, check_target, describe_rules, implied_requirements
from envctl.matrix.versions import Spec

REPO = Path(__file__).resolve().parents[2]

CPU = dict(platforms=["linux-64"], channels=["conda-forge"], python="3.12", torch="2.13", onnx="1.21.*",
           onnxruntime="1.26.*", protobuf=">=4.25.1", opset=18, exporters=["torchscript"])
PIP = ["torch", "onnxruntime", "onnx", "protobuf", "numpy"]
CU118 = dict(CPU, python="3.10", cuda="11.8", cudnn="8", torch="2.3.1+cu118", onnx="1.16.*", onnxruntime="1.18.1",
             protobuf=">=3.20.2,<6", numpy="<2", opset=17, pip=PIP,
             pip_options={"index_url": "https://download.pytorch.org/whl/cu118",
                          "extra_index_urls": ["https://pypi.org/simple"]})
CU12 = dict(CPU, cuda="12.6", cudnn="9", torch="2.13.0+cu126", exporters=["torchscript", "dynamo"], pip=PIP,
            pip_options={"index_url": "https://download.pytorch.org/whl/cu126",
                         "extra_index_urls": ["https://pypi.org/simple"]})
JETSON = dict(CPU, platforms=["linux-aarch64"], python="3.8", cuda="11.8", cudnn="8", torch="2.1.0a0+41361538.nv23.06",
              onnx="1.14.1", onnxruntime="1.16.*", protobuf=">=3.20.2,<5", numpy="<2", opset=17,
              execution_provider="CUDAExecutionProvider", pip=PIP,
              pip_options={"find_links": ["https://developer.download.nvidia.com/compute/redist/jp/v512/pytorch/"],
                           "extra_index_urls": ["https://pypi.jetson-ai-lab.dev/jp5/cu114"]},
              host_provides={"jetpack": "5.1.2", "l4t": "R35.4.1", "cuda": "11.8", "cudnn": "8.6", "tensorrt": "8.5.2"})


@pytest.fixture
def target(tmp_path: Path):
    """Build one target from a base dict plus overrides (None drops a key), through the real loader."""
    def make(base: dict, **overrides) -> Target:
        body = {k: v for k, v in {**base, **overrides}.items() if v is not None}
        path = tmp_path / "matrix.yaml"
        path.write_text(yaml.safe_dump({"version": 1, "targets": {"t": body}}))
        return load_matrix(path).targets["t"]
    return make


def _of(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


def expect(t: Target, rule: str, severity: str) -> Finding:
    """The target has a finding of `rule` with `severity`; it names a source and is one line."""
    found = _of(check_target(t), rule)
    assert found, f"no {rule} finding; got {[(f.severity, f.rule, f.message) for f in check_target(t)]}"
    match = [f for f in found if f.severity == severity]
    assert match, f"{rule}: expected {severity}, got {[(f.severity, f.message) for f in found]}"
    assert match[0].source.strip() and match[0].remedy.strip()
    assert "\n" not in match[0].message + match[0].source + match[0].remedy
    return match[0]


def clean(t: Target, rule: str | None = None) -> None:
    """No errors at all; with `rule`, no finding of that rule either."""
    findings = check_target(t)
    assert not [f for f in findings if f.severity == "error"], [(f.rule, f.message) for f in findings]
    if rule:
        assert not _of(findings, rule), [(f.severity, f.message) for f in _of(findings, rule)]


# --- the shipped matrix ------------------------------------------------------
def test_shipped_matrix_has_no_errors():
    matrix = load_matrix(REPO / "envs" / "matrix.yaml")
    assert {"linux-cpu", "linux-cuda11.8", "linux-cuda12", "macos-arm64-cpu", "windows-cuda12",
            "jetson-cuda11.8"} <= set(matrix.targets)
    for name, findings in check_matrix(matrix).items():
        assert not [f for f in findings if f.severity == "error"], (name, findings)
        assert all(f.source and f.target == name for f in findings)
        assert matrix.targets[name].description


def test_shipped_jetson_target_is_on_the_2_1_line():
    t = load_matrix(REPO / "envs" / "matrix.yaml").targets["jetson-cuda11.8"]
    assert admitted(t.torch, F.TORCH_LINES) == ["2.1"]
    assert t.host["jetpack"] == "5.1.2" and t.execution_provider == "CUDAExecutionProvider"


def test_every_rule_family_is_registered():
    ids = {rule_id for rule_id, _ in describe_rules()}
    assert {"ort-max-opset", "ort-max-ir", "torch-python", "torch-cuda-variant", "torch-exporter-opset",
            "onnx-protobuf-floor", "ort-gpu-cuda-major", "cudnn-major-mix", "numpy2-ort", "numpy2-torch",
            "onnxscript-min", "jetson-ort-gpu-wheels", "jetson-tensorrt", "onnx-opset27-trap", "ort-python",
            "onnx-python", "dynamo-availability", "not-yet-known", "jetpack-cuda", "jetpack-python"} <= ids
    assert all(doc for _, doc in describe_rules())


def test_facts_carry_sources_and_known_lines():
    tables = {name: getattr(F, name) for name in dir(F) if name.isupper() and isinstance(getattr(F, name), dict)}
    for name, table in tables.items():
        for key, fact in table.items():
            assert isinstance(fact, F.Fact) and fact.source.strip(), (name, key)
    for table, lines in ((F.ORT_MAX_OPSET, F.ORT_LINES), (F.ORT_MAX_IR, F.ORT_LINES), (F.TORCH_EXPORTER, F.TORCH_LINES),
                         (F.TORCH_PYTHON, F.TORCH_LINES), (F.ONNX_PROTOBUF, F.ONNX_LINES), (F.ONNX_IR, F.ONNX_LINES)):
        assert sorted(table) == sorted(lines)  # every known line has the fact


# --- version lines -------------------------------------------------------------
@pytest.mark.parametrize("spec, lines", [
    ("2.1.0a0+41361538.nv23.06", ["2.1"]), ("2.13.0+cu126", ["2.13"]), ("2.3.1", ["2.3"]),
    (">=2.12,<2.14", ["2.12", "2.13"]), (">=2.14.1", ["2.14", "2.15"]), ("2.16", []),
])
def test_admitted_release_lines(spec, lines):
    assert admitted(Spec.parse(spec), F.TORCH_LINES) == lines


# --- not yet known -------------------------------------------------------------
def test_newer_torch_is_a_warning_not_an_error(target):
    f = expect(target(CPU, torch="2.16"), "not-yet-known", "warning")
    assert "newer" in f.message and "torch 2.16" in f.message
    clean(target(CPU, torch="2.16"))


def test_older_onnxruntime_is_not_yet_known(target):
    assert "older" in expect(target(CPU, onnxruntime="1.10"), "not-yet-known", "warning").message
    clean(target(CPU), "not-yet-known")


# --- Python ranges ---------------------------------------------------------------
def test_torch_python(target):
    expect(target(CPU, python="3.8", pip=["torch"]), "torch-python", "error")  # torch 2.13: 3.10-3.14
    expect(target(CPU, python="3.8"), "torch-python", "warning")  # from conda: PyPI's range may differ
    clean(target(CPU, python="3.10", onnxruntime="1.23.*"), "torch-python")


def test_onnx_python(target):
    bad = target(CPU, python="3.8", torch="2.1", onnx="1.18.*", onnxruntime="1.16.*", pip=["onnx"], opset=17)
    expect(bad, "onnx-python", "error")  # onnx 1.18 needs Python >= 3.9
    clean(target(CPU, python="3.8", torch="2.1", onnx="1.17.*", onnxruntime="1.16.*", opset=17), "onnx-python")


def test_ort_python(target):
    expect(target(CPU, python="3.10", pip=["onnxruntime"]), "ort-python", "error")  # ORT 1.26: 3.11-3.14
    clean(target(CPU, python="3.11", pip=["onnxruntime"]), "ort-python")


def test_python_narrows_candidates_silently(target):
    # ORT <= 1.16 have no cp312 wheel: with Python 3.12, '*' cannot pick them, so no opset-17 complaint.
    clean(target(CPU, onnxruntime="<=1.17", opset=17, numpy="<2"))


# --- opsets and IR ---------------------------------------------------------------
def test_ort_max_opset_error_cites_source(target):
    f = expect(target(CPU, onnxruntime="1.17.*", opset=21, exporters=["dynamo"]), "ort-max-opset", "error")
    assert "onnxruntime.ai/docs/reference/compatibility" in f.source and "max opset 20" in f.message
    clean(target(CPU, onnxruntime="1.17.*", opset=20), "ort-max-opset")


def test_ort_max_opset_partial_names_the_bound(target):
    f = expect(target(CPU, onnxruntime="*", opset=21), "ort-max-opset", "warning")
    assert "pin onnxruntime>=1.18" in f.message


def test_ort_max_ir_dynamo(target):
    # torch >= 2.6's dynamo exporter writes IR 10; ORT 1.17 loads IR <= 9 (docs/compatibility.md §5 EMP-TORCH table).
    f = expect(target(CPU, exporters=["dynamo"], onnxruntime="1.17.*"), "ort-max-ir", "error")
    assert "IR 10" in f.message
    clean(target(CPU, exporters=["dynamo"], onnxruntime="1.18.*"), "ort-max-ir")
    clean(target(CPU, exporters=["dynamo"], torch="2.5", onnxruntime="1.17.*"), "ort-max-ir")  # 2.5 writes IR 9
    w = expect(target(CPU, exporters=["dynamo"], onnxruntime=">=1.16"), "ort-max-ir", "warning")
    assert "pin onnxruntime>=1.18" in w.message


def test_ort_max_ir_torchscript_follows_opset(target):
    # TorchScript at opset 21 writes IR 10 (kOpsetVersionToIRVersion); ORT 1.18 loads IR 10.
    clean(target(CPU, opset=20, onnxruntime="1.18.*", numpy="<2"), "ort-max-ir")
    expect(target(CPU, opset=21, onnxruntime="1.17.*"), "ort-max-ir", "error")


def test_disputed_fact_only_warns(target):
    # ORT 1.15: docs say max IR 8, measured 9; TorchScript opset 19 writes IR 9.
    f = expect(target(CPU, python="3.11", opset=19, onnxruntime="1.15.*"), "ort-max-ir", "warning")
    assert "UNCONFIRMED" in f.message


def test_torch_exporter_opset(target):
    expect(target(CPU, python="3.11", torch="2.0", opset=19), "torch-exporter-opset", "error")  # ValueError
    expect(target(CPU, torch="2.3"), "torch-exporter-opset", "warning")  # cap 17, >= 2.1 only warns
    clean(target(CPU, torch="2.3", opset=17), "torch-exporter-opset")
    expect(target(CPU, exporters=["dynamo"], opset=24), "torch-exporter-opset", "warning")  # ONNX_MAX_OPSET 23


def test_dynamo_availability(target):
    expect(target(CPU, torch="2.3", opset=17, exporters=["dynamo"]), "dynamo-availability", "error")
    assert "pin torch>=2.5" in expect(target(CPU, torch=">=2.2", exporters=["dynamo"]), "dynamo-availability",
                                      "warning").message
    clean(target(CPU, torch="2.5", exporters=["dynamo"], onnxruntime="1.20.*"), "dynamo-availability")


def test_dynamo_opset_floor(target):
    expect(target(CPU, exporters=["dynamo"], opset=17), "dynamo-opset-floor", "warning")
    clean(target(CPU, exporters=["dynamo"], opset=18), "dynamo-opset-floor")


def test_onnx_max_opset_and_ir(target):
    expect(target(CPU, python="3.11", onnx="1.14.*", opset=20), "onnx-max-opset", "warning")
    clean(target(CPU, python="3.11", onnx="1.15.*", opset=20), "onnx-max-opset")
    expect(target(CPU, python="3.11", onnx="1.15.*", exporters=["dynamo"]), "onnx-max-ir", "warning")
    clean(target(CPU, onnx="1.17.*", exporters=["dynamo"]), "onnx-max-ir")


def test_onnx_opset27_trap(target):
    f = expect(target(CPU, onnx="1.22.*"), "onnx-opset27-trap", "warning")
    assert "make_opsetid" in f.remedy
    clean(target(CPU, onnx="1.22.*", onnxruntime="1.32.*", pip=["onnxruntime"]), "onnx-opset27-trap")
    clean(target(CPU), "onnx-opset27-trap")


# --- protobuf ------------------------------------------------------------------------
def test_onnx_protobuf_floor(target):
    expect(target(CPU, onnx="1.23.*", protobuf="4.25.*", pip=["onnx"]), "onnx-protobuf-floor", "error")
    expect(target(CPU, onnx="1.18.*", protobuf="<4", pip=["onnx"]), "onnx-protobuf-floor", "error")
    expect(target(CPU, onnx="1.18.*", protobuf="<4"), "onnx-protobuf-floor", "warning")  # conda: metadata only
    clean(target(CPU, onnx="1.23.*", protobuf=">=6.31.1", pip=["onnx"]), "onnx-protobuf-floor")
    f = expect(target(CPU, onnx="*", protobuf="4.25.*", pip=["onnx"]), "onnx-protobuf-floor", "warning")
    assert "pin onnx<1.23" in f.message


def test_ort_protobuf_floor(target):
    bad = target(CPU, onnx="1.17.*", onnxruntime="1.27.*", protobuf="4.21.*", pip=["onnx", "onnxruntime"])
    expect(bad, "ort-protobuf-floor", "error")  # ORT >= 1.27 requires protobuf>=4.25.8
    clean(target(CPU, onnxruntime="1.27.*", protobuf=">=4.25.8", pip=["onnxruntime"]), "ort-protobuf-floor")


def test_unconfirmed_conda_protobuf_pairing_only_warns(target):
    f = expect(target(CPU, protobuf="5.29.*"), "conda-onnx-protobuf", "warning")
    assert "UNCONFIRMED" in f.message
    clean(target(CPU, protobuf="5.29.*", pip=["onnx"]), "conda-onnx-protobuf")


# --- CUDA, cuDNN -------------------------------------------------------------------------
def test_cuda_targets_good(target):
    clean(target(CU118))
    clean(target(CU12))


def test_torch_cuda_variant(target):
    f = expect(target(CU118, torch="2.8.0+cu118", python="3.12"), "torch-cuda-variant", "error")
    assert "cu126" in f.message  # 2.8 has cu126/cu128/cu129
    cu126 = {"index_url": "https://download.pytorch.org/whl/cu126"}
    expect(target(CU118, torch="2.13.0", python="3.12", pip_options=cu126), "torch-cuda-variant", "error")  # 12 vs 11.8
    expect(target(CPU, cuda="12.6", torch="2.13.0", pip=["torch"]), "torch-cuda-variant", "error")  # PyPI: CUDA 13
    expect(target(CPU, cuda="11.8"), "torch-cuda-variant", "error")  # conda-forge 2.13: CUDA 12/13 only
    clean(target(CU118), "torch-cuda-variant")


def test_torch_conda_channel(target):
    expect(target(CPU, channels=["pytorch", "conda-forge"], torch="2.6"), "torch-conda-channel", "error")
    clean(target(CPU, channels=["pytorch", "conda-forge"], torch="2.5", onnxruntime="1.20.*"), "torch-conda-channel")


def test_osx_has_no_cuda(target):
    expect(target(CPU, platforms=["osx-arm64"], cuda="12.6"), "osx-no-cuda", "error")
    clean(target(CPU, platforms=["osx-arm64"]), "osx-no-cuda")


def test_ort_gpu_cuda_major(target):
    expect(target(CU118, onnxruntime="1.19.*"), "ort-gpu-cuda-major", "error")  # 1.19 moved to CUDA 12
    expect(target(CU12, onnxruntime="1.27.*", protobuf=">=4.25.8"), "ort-gpu-cuda-major", "error")  # 1.27: CUDA 13
    assert "pin onnxruntime<1.19" in expect(target(CU118, onnxruntime="*", numpy="<2"), "ort-gpu-cuda-major",
                                            "warning").message
    clean(target(CU12), "ort-gpu-cuda-major")
    clean(target(CU12, cuda="13.0", torch="2.13.0+cu130", onnxruntime="1.31.*", protobuf=">=4.25.8"))


def test_cudnn_major_mix(target):
    # torch 2.4 uses cuDNN 9, onnxruntime-gpu 1.18 cuDNN 8 (ORT CUDA-EP docs).
    f = expect(target(CU118, torch="2.4.1+cu118", cudnn=None), "cudnn-major-mix", "error")
    assert "CUDA-ExecutionProvider" in f.source
    clean(target(CU118, torch="2.3.1+cu118"), "cudnn-major-mix")
    expect(target(CU118, torch=">=2.3", cudnn=None), "cudnn-major-mix", "warning")


def test_cudnn_major_declared(target):
    expect(target(CU12, cudnn="8"), "cudnn-major-declared", "error")
    clean(target(CU12, cudnn="9"), "cudnn-major-declared")


# --- numpy 2 -------------------------------------------------------------------------------
def test_numpy2_ort(target):
    expect(target(CPU, onnxruntime="1.17.*", opset=17, numpy=">=2"), "numpy2-ort", "error")
    expect(target(CPU, onnxruntime="1.17.*", opset=17, numpy="*"), "numpy2-ort", "warning")
    clean(target(CPU, onnxruntime="1.17.*", opset=17), "numpy2-ort")  # unset: rendering adds numpy<2
    clean(target(CPU, onnxruntime="1.19.*", numpy=">=2"), "numpy2-ort")


def test_numpy2_torch(target):
    expect(target(CPU, torch="2.2", opset=17, numpy=">=2"), "numpy2-torch", "error")
    clean(target(CPU, torch="2.3", opset=17, numpy=">=2"), "numpy2-torch")


def test_numpy2_onnx_only_warns(target):
    expect(target(CPU, onnx="1.16.*", numpy=">=2", protobuf=">=3.20.2"), "numpy2-onnx", "warning")
    clean(target(CPU, onnx="1.17.*", numpy=">=2", protobuf=">=3.20.2"), "numpy2-onnx")


# --- onnxscript ------------------------------------------------------------------------------
def test_onnxscript_min(target):
    dyn = dict(CPU, exporters=["dynamo"])
    expect(target(dyn, onnxscript="<0.6"), "onnxscript-min", "error")  # torch 2.11+ imports torch_2_11 (0.6.0)
    expect(target(dyn, onnxscript="*"), "onnxscript-min", "warning")
    clean(target(dyn, onnxscript=">=0.6.0"), "onnxscript-min")
    clean(target(dyn, torch="2.9", onnxscript=">=0.4.0"), "onnxscript-min")


def test_onnxscript_onnx(target):
    expect(target(CPU, exporters=["dynamo"], onnx="1.16.*", protobuf=">=3.20.2"), "onnxscript-onnx", "error")
    clean(target(CPU, exporters=["dynamo"], onnx="1.17.*", protobuf=">=3.20.2"), "onnxscript-onnx")


def test_implied_requirements(target):
    implied = {i.package: i for i in implied_requirements(target(CPU, exporters=["torchscript", "dynamo"]))}
    assert str(implied["onnxscript"].spec) == ">=0.6.0" and implied["onnxscript"].source
    assert "torch_2_11" in implied["onnxscript"].reason
    assert "onnxscript" not in {i.package for i in implied_requirements(target(CPU, exporters=["torchscript"]))}
    older = {i.package: str(i.spec) for i in implied_requirements(target(CPU, torch="2.9", exporters=["dynamo"]))}
    assert older["onnxscript"] == ">=0.4.0"
    assert {i.package: str(i.spec) for i in implied_requirements(target(CU118))}.get("numpy") == "<2"
    assert "numpy" not in {i.package for i in implied_requirements(target(CPU))}


# --- Jetson ------------------------------------------------------------------------------------
def test_jetson_good(target):
    assert not check_target(target(JETSON))


def test_jetson_ort_gpu_wheels(target):
    only_torch = {"find_links": JETSON["pip_options"]["find_links"]}
    f = expect(target(JETSON, pip_options=only_torch), "jetson-ort-gpu-wheels", "error")
    assert "aarch64" in f.source
    clean(target(JETSON), "jetson-ort-gpu-wheels")


def test_jetson_tensorrt(target):
    # JetPack 5 has TensorRT 8.5; ORT >= 1.18's TensorRT EP links libnvinfer.so.10.
    expect(target(JETSON, onnxruntime="1.18.*", execution_provider="TensorrtExecutionProvider"), "jetson-tensorrt",
           "error")
    expect(target(JETSON, onnxruntime="1.18.*"), "jetson-tensorrt", "warning")  # CUDA EP unaffected
    clean(target(JETSON, execution_provider="TensorrtExecutionProvider"), "jetson-tensorrt")


def test_jetpack_cuda(target):
    expect(target(JETSON, cuda="12.2"), "jetpack-cuda", "error")  # host provides 11.8
    host = dict(JETSON["host_provides"], cuda="11.6")
    expect(target(JETSON, cuda="11.6", host_provides=host), "jetpack-cuda", "warning")  # neither 11.4 nor >= 11.8
    clean(target(JETSON), "jetpack-cuda")


def test_jetpack_python(target):
    expect(target(JETSON, python="3.10"), "jetpack-python", "error")  # NVIDIA's JP5 wheels are cp38
    clean(target(JETSON), "jetpack-python")


def test_jetpack_stack(target):
    expect(target(JETSON, host_provides=dict(JETSON["host_provides"], l4t="R35.3.1")), "jetpack-stack", "warning")
    clean(target(JETSON), "jetpack-stack")


def test_unknown_jetpack_is_not_yet_known(target):
    f = expect(target(JETSON, host_provides=dict(JETSON["host_provides"], jetpack="9.0")), "not-yet-known", "warning")
    assert "JetPack 9.0" in f.message


# --- robustness ---------------------------------------------------------------------------------
_SPECS = {
    "python": ["3.8", "3.10", "3.12", "3.14", "*", ">=3.9,<3.13", "3.7", "3.15"],
    "torch": ["2.13", "2.13.0+cu126", "2.1.0a0+41361538.nv23.06", "2.3.1+cu118", "*", ">=2.4,<2.9", "1.13", "2.16",
              "2.0"],
    "onnx": ["1.12", "1.16.*", "1.21.*", "1.22.0", "1.23.2", "*", "<1.18", "1.30"],
    "onnxruntime": ["1.12.1", "1.15.*", "1.17.3", "1.18.1", "1.26.*", "1.32.0", "*", ">=1.19", "1.40"],
    "protobuf": ["*", "3.20.*", "4.25.*", ">=6.31.1", "<4", "9.0"],
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.fixed_dictionaries({k: st.sampled_from(v) for k, v in _SPECS.items()}),
    numpy=st.sampled_from([None, "<2", ">=2", "*", "1.26.*", "3.0"]),
    onnxscript=st.sampled_from([None, "*", "<0.6", ">=0.6.0", "0.9"]),
    opset=st.integers(7, 30),
    exporters=st.sampled_from([("torchscript",), ("dynamo",), ("torchscript", "dynamo")]),
    cuda=st.sampled_from([None, "11.8", "12.6", "13.0"]),
    cudnn=st.sampled_from([None, "8", "9"]),
    platforms=st.sampled_from([("linux-64",), ("linux-aarch64",), ("osx-arm64",), ("win-64",), ("linux-64", "win-64")]),
    channels=st.sampled_from([("conda-forge",), ("pytorch", "conda-forge"), ("file:///tmp/channel",)]),
    pip=st.sampled_from([(), ("torch",), ("torch", "onnxruntime", "onnx", "protobuf", "numpy")]),
    urls=st.sampled_from([PipOptions(), PipOptions(index_url="https://download.pytorch.org/whl/cu118"),
                          PipOptions(find_links=tuple(JETSON["pip_options"]["find_links"]),
                                     extra_index_urls=tuple(JETSON["pip_options"]["extra_index_urls"]))]),
    host=st.sampled_from([(), (("jetpack", "5.1.2"), ("tensorrt", "8.5.2")), (("jetpack", "6.1"), ("cuda", "12.6")),
                          (("jetpack", "7.2"),), (("cudnn", "x"), ("tensorrt", "?"), ("cuda", "eleven"))]),
    ep=st.sampled_from(["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]),
)
def test_check_target_never_raises(specs, numpy, onnxscript, opset, exporters, cuda, cudnn, platforms, channels, pip,
                                   urls, host, ep):
    t = Target(name="h", platforms=platforms, channels=channels, opset=opset, exporters=exporters,
               **{k: Spec.parse(v) for k, v in specs.items()}, cuda=cuda, cudnn=cudnn,
               onnxruntime_build="gpu" if cuda else "cpu", numpy=Spec.parse(numpy) if numpy else None,
               onnxscript=Spec.parse(onnxscript) if onnxscript else None, pip=pip, pip_options=urls,
               host_provides=host, execution_provider=ep)
    findings = check_target(t)
    implied_requirements(t)
    for f in findings:
        assert f.severity in ("error", "warning") and f.rule and f.source.strip() and f.message
        assert "\n" not in f.message + f.source + f.remedy
    for f in findings:  # a spec newer than the facts never yields an error on its own
        assert f.rule != "not-yet-known" or f.severity == "warning"
