"""Compatibility facts behind envctl's rules: data only, one entry per release line.

Every value is a `Fact` with the `source` it was taken from (a URL where
there is one, else a section of the fact sheet docs/compatibility.md, cited
as "docs/compatibility.md §N") and `confirmed`: False where the sheet marks
the value UNCONFIRMED or its sources disagree. Rules (rules.py) may only warn
on unconfirmed facts.

A "release line" is major.minor ("1.18"): the facts hold for every patch of
the line unless the sheet says otherwise. Lines are listed oldest first; a
version newer than the last line is "not yet known" and is not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple


@dataclass(frozen=True)
class Fact:
    value: Any
    source: str
    confirmed: bool = True


# The fact sheet in this repository; sources cite its sections as f"{CF} §N".
CF = "docs/compatibility.md"


def _lines(prefix: str, lo: int, hi: int) -> tuple[str, ...]:
    return tuple(f"{prefix}.{m}" for m in range(lo, hi + 1))


def _table(lines: tuple[str, ...], values: dict[str, Any], source: str | Callable[[str], str],
           confirmed: bool = True) -> dict[str, Fact]:
    """{line or "first-last": value} -> {line: Fact}; ranges expand over the known `lines`."""
    out: dict[str, Fact] = {}
    for key, value in values.items():
        first, _, last = key.partition("-")
        for line in lines[lines.index(first): lines.index(last or first) + 1]:
            out[line] = Fact(value, source(line) if callable(source) else source, confirmed)
    return out


# --- Known release lines ----------------------------------------------------
# Python: the range the sheet checked cp tags for (§4 "checked for 3.8 to 3.14").
PYTHON_LINES = _lines("3", 8, 14)
TORCH_LINES = ("1.13",) + _lines("2", 0, 15)
ONNX_LINES = _lines("1", 12, 23)
ORT_LINES = _lines("1", 12, 32)
NUMPY_LINES = _lines("1", 19, 26) + _lines("2", 0, 4)
# protobuf's python package went 3.20 -> 4.21 (C++ 3.21), then majors 5, 6, 7 with the minor counting on.
PROTOBUF_LINES = (_lines("3", 12, 20) + _lines("4", 21, 25) + _lines("5", 26, 29) + _lines("6", 30, 33)
                  + _lines("7", 34, 36))
ONNXSCRIPT_LINES = _lines("0", 1, 7)

# --- Python ranges (lowest, highest line with cp wheels) --------------------
TORCH_PYTHON = _table(
    TORCH_LINES,
    {"1.13": ("3.7", "3.11"), "2.0-2.1": ("3.8", "3.11"), "2.2-2.4": ("3.8", "3.12"),
     "2.5-2.8": ("3.9", "3.13"), "2.9-2.14": ("3.10", "3.14"), "2.15": ("3.11", "3.14")},
    lambda l: f"{CF} §4 (PyPI-idx: cp tags of torch {l} on PyPI)",
)
ONNX_PYTHON = _table(
    ONNX_LINES,
    {"1.12": ("3.7", "3.10"), "1.13-1.14": ("3.7", "3.11"), "1.15": ("3.8", "3.11"),
     "1.16-1.17": ("3.8", "3.12"), "1.18-1.19": ("3.9", "3.13"), "1.20-1.23": ("3.10", "3.14")},
    lambda l: f"{CF} §1 (PyPI-meta/PyPI-idx: onnx {l} wheels)",
)
ORT_PYTHON = _table(
    ORT_LINES,
    {"1.12-1.14": ("3.8", "3.10"), "1.15-1.16": ("3.8", "3.11"), "1.17-1.19": ("3.8", "3.12"),
     "1.20-1.23": ("3.10", "3.13"), "1.24-1.32": ("3.11", "3.14")},
    lambda l: f"{CF} §2 (PyPI-idx: cp tags of onnxruntime {l} for linux x86_64)",
)

# --- onnx: last released ai.onnx opset, IR_VERSION, declared protobuf ------
def _onnx_src(path: str) -> Callable[[str], str]:
    return lambda l: f"https://github.com/onnx/onnx/blob/v{l}.0/{path}"


ONNX_MAX_OPSET = {
    **_table(ONNX_LINES, {"1.12": 17, "1.13": 18, "1.14": 19, "1.15": 20, "1.16": 21, "1.17": 22, "1.18": 23,
              "1.19": 24, "1.20": 25, "1.21": 26}, _onnx_src("docs/Versioning.md")),
    # 1.22: 27 is in the schema map but the last *released* opset is 26 (§0.2).
    "1.22": Fact(26, "https://github.com/onnx/onnx/blob/v1.22.0/onnx/defs/schema.h "
                 "(last_release_version_map_ ai.onnx = 26)"),
    "1.23": Fact(28, f"{CF} §1 (EMP: onnx 1.23.2 onnx_opset_version() = 28)"),
}
ONNX_IR = {
    **_table(ONNX_LINES, {"1.12-1.13": 8, "1.14-1.15": 9, "1.16-1.17": 10, "1.18": 11, "1.19": 12, "1.20-1.22": 13},
             _onnx_src("docs/Versioning.md")),
    "1.23": Fact(14, f"{CF} §1 (EMP: onnx 1.23.2 IR_VERSION = 14)"),
}
ONNX_PROTOBUF = {
    **_table(ONNX_LINES, {"1.12": ">=3.12.2,<=3.20.1", "1.13": ">=3.20.2,<4", "1.14": ">=3.20.2",
                          "1.16-1.17": ">=3.20.2"}, _onnx_src("requirements.txt")),
    **_table(ONNX_LINES, {"1.15": ">=3.20.2", "1.18-1.22": ">=4.25.1"}, _onnx_src("pyproject.toml")),
    # 1.23 gencode imports google.protobuf.runtime_version: fails on 4.25.3 (EMP-PB).
    "1.23": Fact(">=6.31.1", f"{CF} §1/§8 #2 (PyPI-meta onnx 1.23.x; EMP-PB: 1.23.2 + protobuf 4.25.3 fails)"),
}
# Lines whose floor is a measured import failure, not only PyPI metadata (§8 #2).
ONNX_PROTOBUF_RUNTIME = ("1.23",)
# The python protobuf line(s) matching the libprotobuf conda-forge built each
# onnx with (libprotobuf 3.21 <-> protobuf 4.21); the sheet calls the pairing
# itself UNCONFIRMED as a documented guarantee.
ONNX_CONDA_FORGE_PROTOBUF = _table(
    ONNX_LINES,
    {"1.13": ("4.21",), "1.14": ("4.21", "4.23"), "1.15-1.16": ("4.25",), "1.17": ("5.29",),
     "1.18-1.20": ("6.31",), "1.21-1.22": ("6.33", "7.35")},
    lambda l: f"https://github.com/conda-forge/onnx-feedstock ({CF} §6: .ci_support libprotobuf for onnx {l})",
    confirmed=False,
)
# onnx < 1.17 + numpy 2: no official support, but EMP imported 1.14.1-1.16.2 fine.
ONNX_NUMPY2_FIRST = Fact("1.17", f"https://github.com/onnx/onnx/pull/6196; {CF} §8 #5 (EMP-NP)", confirmed=False)

# --- onnxruntime: max loadable opset and IR, numpy, protobuf ----------------
_ORT_DOC = "https://onnxruntime.ai/docs/reference/compatibility.html"


def _ort_src(l: str) -> str:
    doc = f"{_ORT_DOC}; " if tuple(map(int, l.split("."))) <= (1, 20) else ""
    return f"{doc}{CF} §2 (EMP-ORT: onnxruntime {l} measured)"


ORT_MAX_OPSET = _table(
    ORT_LINES,
    {"1.12-1.13": 17, "1.14": 18, "1.15-1.16": 19, "1.17": 20, "1.18-1.20": 21, "1.21-1.22": 22,
     "1.23": 23, "1.24": 25, "1.25-1.31": 26, "1.32": 28}, _ort_src)
ORT_MAX_IR = _table(
    ORT_LINES,
    {"1.12-1.14": 8, "1.15-1.17": 9, "1.18-1.22": 10, "1.23": 11, "1.24-1.31": 13, "1.32": 14}, _ort_src)
# Where the docs and the measurement disagree, the lower value only warns.
ORT_MAX_IR_DISPUTED = {
    "1.15": Fact(8, f"{_ORT_DOC} says IR 8; {CF} §0.1 (EMP-ORT: 1.15.1 loads IR 9)", confirmed=False),
}
# Built against numpy 1.x: <=1.17 declare no upper bound (pip picks numpy 2,
# import fails); 1.18 pins numpy<2. 1.19+ work with numpy 2.
ORT_NUMPY1_ONLY = _table(
    ORT_LINES,
    {"1.12-1.17": "no numpy<2 pin", "1.18": "pins numpy<2"},
    f"https://github.com/microsoft/onnxruntime/issues/21063; {CF} §0.7 / §8 #3 (EMP-NP)",
)
ORT_PROTOBUF = _table(ORT_LINES, {"1.27-1.32": ">=4.25.8"},
                      lambda l: f"{CF} §2 (PyPI-meta: onnxruntime {l} Requires-Dist protobuf>=4.25.8)")

# --- onnxruntime-gpu (PyPI, linux x86_64): CUDA / cuDNN / TensorRT majors ----
_CUDA_EP = "https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html"
ORT_GPU_CUDA = _table(
    ORT_LINES,
    {"1.12-1.18": 11, "1.19-1.26": 12, "1.27-1.31": 13},
    lambda l: f"{_CUDA_EP}; {CF} §3 (WHEEL: libcudart soname of onnxruntime-gpu {l})",
)
ORT_GPU_CUDNN = _table(ORT_LINES, {"1.12-1.18": 8, "1.19-1.31": 9},
                       lambda l: f"{_CUDA_EP}; {CF} §3 (onnxruntime-gpu {l})")
ORT_TENSORRT = _table(
    ORT_LINES,
    {"1.12-1.17": 8, "1.18-1.32": 10},
    f"{CF} §3/§7 (WHEEL: libnvinfer.so.8 in onnxruntime-gpu <=1.17, libnvinfer.so.10 from 1.18)",
)
# conda-forge onnxruntime CUDA builds (linux-64), by CUDA major. 1.23 is left
# out: the sheet could not tell whether it was published.
ORT_CONDA_FORGE_CUDA = _table(
    ORT_LINES,
    {"1.15-1.16": (11,), "1.17-1.20": (11, 12), "1.21-1.22": (12,), "1.24": (12,), "1.25-1.26": (12, 13)},
    lambda l: f"https://github.com/conda-forge/onnxruntime-feedstock ({CF} §6: CUDA builds of {l})",
)
# No aarch64 onnxruntime-gpu wheel on PyPI, for any version.
ORT_GPU_AARCH64_PYPI = Fact(False, f"{CF} §0.8 / §3 (PyPI-idx: no aarch64 onnxruntime-gpu wheels)")

# --- torch: CUDA builds, cuDNN, numpy ---------------------------------------
_PREV = "https://pytorch.org/get-started/previous-versions/"
_TI = "https://github.com/pytorch/test-infra/blob/main/tools/scripts/generate_binary_build_matrix.py"
TORCH_VARIANTS = {
    **_table(
    TORCH_LINES,
        {"1.13": ("cu116", "cu117"), "2.0": ("cu117", "cu118"), "2.1-2.3": ("cu118", "cu121"),
         "2.4-2.5": ("cu118", "cu121", "cu124"), "2.6": ("cu118", "cu124", "cu126"),
         "2.7": ("cu118", "cu126", "cu128"), "2.8": ("cu126", "cu128", "cu129"),
         "2.9-2.11": ("cu126", "cu128", "cu130"), "2.12-2.13": ("cu126", "cu130", "cu132")},
        lambda l: f"{_PREV}; {_TI} ({CF} §4, torch {l})",
    ),
    # The test channel listed these while 2.14 was the candidate (§9.2).
    "2.14": Fact(("cu126", "cu130", "cu132", "cu134"), f"{_TI} ({CF} §4: 2.14 variants UNCONFIRMED)", False),
}
# CUDA of the default (PyPI) linux x86_64 wheel, from its nvidia-* pins.
TORCH_PYPI_CUDA = _table(
    TORCH_LINES,
    {"1.13-2.0": "11.7", "2.1-2.4": "12.1", "2.5-2.6": "12.4", "2.7": "12.6", "2.8-2.10": "12.8",
     "2.11-2.14": "13.0", "2.15": "13.2"},
    lambda l: f"{CF} §4 (PyPI-meta: nvidia-*/cuda-toolkit pins of torch {l})",
)
TORCH_CUDNN = _table(
    TORCH_LINES,
    {"1.13-2.3": 8, "2.4-2.15": 9},
    f"{_CUDA_EP} ('PyTorch 2.3 uses cuDNN 8.x, while PyTorch 2.4 or later uses cuDNN 9.x')",
)
# conda-forge pytorch CUDA builds (linux-64, linux-aarch64, win-64) by CUDA major.
TORCH_CONDA_FORGE_CUDA = _table(
    TORCH_LINES,
    {"2.5-2.9": (12,), "2.10-2.13": (12, 13)},
    lambda l: f"https://github.com/conda-forge/pytorch-cpu-feedstock ({CF} §6: .ci_support of pytorch {l})",
)
PYTORCH_CHANNEL_LAST = Fact("2.5", "https://github.com/pytorch/pytorch/issues/138506")
TORCH_NUMPY2_FIRST = Fact("2.3", f"https://github.com/pytorch/pytorch/issues/132179; {CF} §8 #4")


# --- torch.onnx exporters ---------------------------------------------------
class Exporter(NamedTuple):
    max_opset: int  # ONNX_MAX_OPSET
    ts_max: int  # TorchScript exporter cap
    ts_over_cap_raises: bool  # True: ValueError above the cap; False: a warning only
    dynamo: str | None  # "export" (dynamo=True), "dynamo_export" (beta) or None
    dynamo_ir: int | None
    onnxscript_min: str | None
    onnxscript_module: str | None
    dynamo_build_opset: int | None  # builds here and version-converts lower requests


_WHEEL = f"{CF} §5 (WHEEL: torch/onnx/_constants.py, __init__.py, _internal/_lazy_import.py of torch"
TORCH_EXPORTER = {
    **_table(TORCH_LINES, {"1.13": Exporter(17, 17, True, None, None, None, None, None),
              "2.0": Exporter(18, 18, True, None, None, None, None, None),
              "2.1-2.3": Exporter(19, 17, False, "dynamo_export", None, None, None, None),
              "2.4": Exporter(20, 20, False, "dynamo_export", None, None, None, None),
              "2.5": Exporter(20, 20, False, "export", 9, "0.1.0", "torch_2_5", None),
              "2.6": Exporter(20, 20, False, "export", 10, "0.1.0", "torch_2_6", None),
              "2.7": Exporter(20, 20, False, "export", 10, "0.2.2", "torch_2_7", None),
              "2.8": Exporter(23, 20, False, "export", 10, "0.3.1", "torch_2_8", None),
              "2.9-2.10": Exporter(23, 20, False, "export", 10, "0.4.0", "torch_2_9", 18),
              "2.11-2.15": Exporter(23, 20, False, "export", 10, "0.6.0", "torch_2_11", 18)},
             lambda l: f"{_WHEEL} {l})"),
}
TS_CAP_SOURCE = "https://github.com/pytorch/pytorch/pull/107829"
# TorchScript exporter: IR written per opset (kOpsetVersionToIRVersion).
TS_IR_BY_OPSET = {o: Fact(ir, f"{CF} §5 (torch/csrc/jit/serialization/export.cpp kOpsetVersionToIRVersion; EMP-TORCH)")
                  for o, ir in {15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10, 22: 10, 23: 11}.items()}
ONNX_CHECKER_IR = "https://github.com/onnx/onnx/blob/main/onnx/checker.cc (check_model fails above IR_VERSION)"
# onnxscript's own requirement on onnx.
ONNXSCRIPT_ONNX_MIN = _table(ONNXSCRIPT_LINES, {"0.1-0.5": "1.16", "0.6-0.7": "1.17"},
                             lambda l: f"{CF} §5 (PyPI-meta: onnxscript {l} Requires-Dist onnx)")

# --- NVIDIA Jetson ----------------------------------------------------------
_JC = "https://github.com/dusty-nv/jetson-containers"
_FORUM = "https://forums.developer.nvidia.com/t/pytorch-for-jetson/72048"
JETPACK_L4T = {
    jp: Fact(l4t, f"{_FORUM}; {_JC} l4t_version.py ({CF} §7)")
    for jp, l4t in {"4.6": "R32.6.1", "4.6.1": "R32.7.1", "5.0.2": "R35.1", "5.1": "R35.2.1", "5.1.1": "R35.3.1",
                    "5.1.2": "R35.4.1", "5.1.3": "R35.5.0", "5.1.4": "R35.6.0", "5.1.5": "R35.6.1",
                    "6.0": "R36.3", "6.1": "R36.4.0", "6.2": "R36.4.3", "6.2.1": "R36.4.4",
                    "7.0": "R38.2", "7.1": "R38.4"}.items()
}


class JetPack(NamedTuple):
    python: str
    cuda: str
    cudnn: str | None
    tensorrt: str | None


_T = "https://docs.pytorch.org/TensorRT/getting_started/jetpack.html"
JETPACK = {
    "4.6": Fact(JetPack("3.6", "10.2", "8.2", "8.2"), f"{_FORUM}; {CF} §7"),
    "5.0": Fact(JetPack("3.8", "11.4", "8.4", "8.4"),
                f"https://developer.nvidia.com/embedded/jetpack-sdk-502; {CF} §7"),
    "5.1": Fact(JetPack("3.8", "11.4", "8.6", "8.5"), f"{_FORUM}; {CF} §7"),
    "6.0": Fact(JetPack("3.10", "12.2", "8.9", "8.6"), f"{CF} §7 (JP 6.0 cuDNN/TensorRT UNCONFIRMED)", False),
    "6.1": Fact(JetPack("3.10", "12.6", "9.3", "10.3"), f"{_T}; {CF} §7"),
    "6.2": Fact(JetPack("3.10", "12.6", "9.3", "10.3"), f"{_T}; {CF} §7"),
    "7.0": Fact(JetPack("3.12", "13.0", None, None),
                f"https://developer.nvidia.com/embedded/jetpack-archive; {CF} §7 (cuDNN/TensorRT UNCONFIRMED)", False),
    "7.1": Fact(JetPack("3.12", "13.0", None, None), f"{_JC} ({CF} §7)", False),
}
# 5.1.3-5.1.5 package "the same compute stack as 5.1.3", whose versions are UNCONFIRMED.
JETPACK_UNCONFIRMED = ("5.1.3", "5.1.4", "5.1.5")
# JetPack >= 5 can take a newer CUDA (>= 11.8) without reflashing.
JETSON_CUDA_UPGRADE = Fact(("5", "11.8"), f"NVIDIA blog 'Simplifying CUDA Upgrades for NVIDIA Jetson Users' ({CF} §7)")
# Where NVIDIA's / Jetson AI Lab's aarch64 wheels live (URL fragments).
JETSON_WHEEL_HOSTS = ("developer.download.nvidia.com/compute/redist/jp", "jetson-ai-lab")
