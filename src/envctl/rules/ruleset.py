"""The compatibility rules themselves, registered into rulecontext.RULES.

Each rule has an id and a one-line docstring; sources come from facts.py.
"""

from __future__ import annotations

from typing import Callable

from packaging.version import Version as V

from envctl.rules import facts as F
from envctl.rules.facts import Fact
from envctl.rules.engine import (  # shared helpers of the engine
    RULES,
    RuleContext,
    KNOWN,
    PY,
    exp,
    line_of,
    line_rule,
    lt,
    major_of,
    named_versions,
    newer_than,
    overlap,
    probes,
    py_ok,
    span,
    src,
    ver,
    admitted,
    rule,
)


@rule("not-yet-known")
def _not_yet_known(c: RuleContext) -> None:
    """A spec admits no release the facts know (newer or older): reported once, not checked."""
    for pkg, lines in KNOWN.items():
        spec = c.t.spec(pkg)
        if spec is None or admitted(spec, lines):
            continue
        named = named_versions(spec)
        where = ("newer than" if newer_than(spec, lines) else
                 "older than" if named and all(v < V(f"{lines[0]}.0") for v in named) else "outside what")
        c.emit("warning", f"{pkg} {spec} is {where} envctl's rules know ({span(lines)}); not checked",
               f"envctl facts.py: known {pkg} lines {span(lines)} ({F.CF})",
               f"check {pkg} {spec} by hand, or update envctl's facts")
    if c.host.get("jetpack") and c.jp is None:
        c.emit("warning", f"JetPack {c.host['jetpack']} is not in envctl's facts; Jetson rules not checked",
               f"envctl facts.py JETPACK ({F.CF} §7)", "check the JetPack stack by hand")


def _python_rule(pkg: str) -> Callable[[RuleContext], None]:
    def check(c: RuleContext) -> None:
        py, lines, table = c.raw["python"], c.raw[pkg], PY[pkg]
        if not py or not lines or any(py_ok(p, table[l]) for l in lines for p in py):
            return
        ranges = ", ".join(f"{l}: {table[l].value[0]}–{table[l].value[1]}" for l in lines[-2:])
        pip = c.via_pip(pkg)
        c.emit("error" if pip else "warning", f"{pkg} {c.t.spec(pkg)} has no wheel for Python {c.t.python} "
               f"(Python {ranges})" + ("" if pip else "; PyPI's range, conda builds may differ"),
               src(table[l] for l in lines), f"use a Python in {pkg}'s range, or another {pkg}")
    return check


for _pkg, _id in (("torch", "torch-python"), ("onnx", "onnx-python"), ("onnxruntime", "ort-python")):
    RULES.append((_id, f"{_pkg} has wheels only for some Pythons (PyPI cp tags).", _python_rule(_pkg)))


@rule("osx-no-cuda")
def _osx(c: RuleContext) -> None:
    """macOS builds of torch and onnxruntime have no CUDA."""
    if any(p.startswith("osx") for p in c.t.platforms) and (c.t.cuda or c.gpu):
        c.emit("error", "the target asks for CUDA or onnxruntime-gpu on macOS; macOS builds are CPU only",
               f"{F.CF} §6 (conda-forge: osx pytorch and onnxruntime are cpu builds)",
               "set cuda: none and onnxruntime_build: cpu for macOS")


_VARIANTS = F.TORCH_VARIANTS
line_rule("torch-cuda-variant", "The CUDA build of torch a target asks for must exist for that release.", "torch",
           lambda c, l: None if c.variant in _VARIANTS[l].value else _VARIANTS[l],
           "torch {spec} has no {c.variant} build (it has {val})",
           "torch {spec} admits {bad}, which have no {c.variant} build{pin}",
           "pick a download.pytorch.org index that torch {spec} is built for",
           when=lambda c: c.variant_cuda > 0, lines=lambda c: [l for l in c.c["torch"] if l in _VARIANTS])
line_rule("torch-cuda-variant", "torch's CUDA build must have the target's CUDA major.", "torch",
           lambda c, l: _VARIANTS[l] if c.variant_cuda != c.want else None,
           "torch's {c.variant} build is CUDA {c.variant_cuda}, but the target's cuda is {t.cuda}",
           "torch's {c.variant} build does not match the target's cuda {t.cuda}",
           "use the download.pytorch.org index for CUDA {c.want}, or change cuda",
           when=lambda c: c.variant_cuda > 0 and c.want > 0,
           lines=lambda c: [l for l in c.c["torch"] if l in _VARIANTS])
line_rule("torch-cuda-variant", "PyPI's default linux torch wheel is one CUDA build (12.x from 2.1, 13.x from 2.11).",
           "torch", lambda c, l: F.TORCH_PYPI_CUDA[l] if major_of(F.TORCH_PYPI_CUDA[l].value) != c.want else None,
           "torch {spec} from PyPI is a CUDA {val} build; the target's cuda is {t.cuda}",
           "torch {spec} admits {bad}, whose PyPI wheels are not CUDA {c.want}{pin}",
           "take torch from download.pytorch.org/whl/cu{c.want}x (pip_options.index_url)",
           when=lambda c: c.want > 0 and c.via_pip("torch") and c.variant is None and not c.jetson_torch
           and "linux-64" in c.t.platforms)
line_rule("torch-cuda-variant", "conda-forge builds pytorch for some CUDA majors only.", "torch",
           lambda c, l: None if c.want in F.TORCH_CONDA_FORGE_CUDA[l].value else F.TORCH_CONDA_FORGE_CUDA[l],
           "conda-forge has no CUDA {c.want} build of pytorch {spec} (CUDA majors {val})",
           "pytorch {spec} admits {bad}, which conda-forge builds without CUDA {c.want}{pin}",
           "take torch from download.pytorch.org through pip, or change cuda",
           when=lambda c: c.want > 0 and c.conda_forge("torch") and not all(p.startswith("osx") for p in c.t.platforms),
           lines=lambda c: [l for l in c.c["torch"] if l in F.TORCH_CONDA_FORGE_CUDA])
line_rule("torch-conda-channel", "The `pytorch` Anaconda channel stopped at torch 2.5.", "torch",
           lambda c, l: F.PYTORCH_CHANNEL_LAST if lt(F.PYTORCH_CHANNEL_LAST.value, l) else None,
           "torch {spec} is not on the pytorch channel (its last release is {val})",
           "torch {spec} admits {bad}, newer than the pytorch channel's last release{pin}",
           "use conda-forge, or torch wheels through pip",
           when=lambda c: not c.via_pip("torch") and any(ch.rstrip("/").split("/")[-1] == "pytorch"
                                                         for ch in c.t.channels))
line_rule("dynamo-availability", "torch.onnx.export(dynamo=True) exists from torch 2.5 (2.1-2.4: beta dynamo_export).",
           "torch", lambda c, l: None if exp(l).dynamo == "export" else F.TORCH_EXPORTER[l],
           "torch {spec} has no torch.onnx.export(dynamo=True) (2.1–2.4 have only the beta dynamo_export)",
           "torch {spec} admits {bad}, which have no torch.onnx.export(dynamo=True){pin}",
           "use torch>=2.5, or drop the dynamo exporter", when=lambda c: "dynamo" in c.t.exporters)
# Above the TorchScript cap torch 1.13/2.0 raise ValueError and >= 2.1 only warn.
line_rule("torch-exporter-opset", "The opset must be within the TorchScript exporter's cap (17 in 2.1-2.3, 20 later).",
           "torch", lambda c, l: Fact(exp(l).ts_max, F.TORCH_EXPORTER[l].source) if c.t.opset > exp(l).ts_max
           else None,
           "opset {t.opset} is above torch {spec}'s TorchScript exporter maximum ({val})",
           "torch {spec} admits {bad}, whose TorchScript exporter supports opset <= {val}{pin}",
           "lower the opset, or use the dynamo exporter for opsets above the TorchScript cap",
           when=lambda c: "torchscript" in c.t.exporters,
           soft=lambda c: not all(exp(l).ts_over_cap_raises for l in c.c["torch"]),
           also=lambda c: [] if all(exp(l).ts_over_cap_raises for l in c.c["torch"]) else [Fact(0, F.TS_CAP_SOURCE)])
line_rule("torch-exporter-opset", "The opset must be at most torch's ONNX_MAX_OPSET for the dynamo exporter.", "torch",
           lambda c, l: Fact(exp(l).max_opset, F.TORCH_EXPORTER[l].source) if c.t.opset > exp(l).max_opset else None,
           "opset {t.opset} is above torch {spec}'s ONNX_MAX_OPSET ({val}) for the dynamo exporter; behaviour "
           "unverified",
           "torch {spec} admits {bad}, whose dynamo exporter supports opset <= {val}{pin}",
           "lower the opset, or use a newer torch", when=lambda c: "dynamo" in c.t.exporters, soft=lambda c: True,
           lines=lambda c: [l for l in c.c["torch"] if exp(l).dynamo == "export"])


@rule("dynamo-opset-floor")
def _dynamo_floor(c: RuleContext) -> None:
    """torch >= 2.9's dynamo exporter builds at opset 18 and version-converts lower requests."""
    lines = [l for l in c.c["torch"] if exp(l).dynamo_build_opset] if "dynamo" in c.t.exporters else []
    floor = min((exp(l).dynamo_build_opset for l in lines), default=0)
    if lines and c.t.opset < floor:
        old = [l for l in c.c["onnxruntime"] if F.ORT_MAX_OPSET[l].value < floor]
        c.emit("warning", f"torch {span(lines)}'s dynamo exporter builds at opset {floor} and converts down to "
               f"{c.t.opset}; if that fails the model stays at {floor}"
               + (f", which onnxruntime {span(old)} cannot load" if old else ""),
               F.TORCH_EXPORTER[lines[-1]].source, f"export at opset>={floor} with dynamo, or check the exported opset")


line_rule("ort-max-opset", "onnxruntime loads models only up to the last released opset of the onnx it bundles.",
           "onnxruntime", lambda c, l: F.ORT_MAX_OPSET[l] if F.ORT_MAX_OPSET[l].value < c.t.opset else None,
           "opset {t.opset} is above what onnxruntime {spec} loads (max opset {val})",
           "onnxruntime {spec} admits {bad}, which cannot load opset {t.opset}{pin}",
           "lower the opset, or use an onnxruntime that loads opset {t.opset}")


def _ort_ir(exporter: str) -> Callable[[RuleContext, str], Fact | None]:
    def test(c: RuleContext, o: str) -> Fact | None:
        ir, disputed = c.ir[exporter].value, F.ORT_MAX_IR_DISPUTED.get(o)
        if F.ORT_MAX_IR[o].value < ir:
            return F.ORT_MAX_IR[o]
        return disputed if disputed and disputed.value < ir else None  # docs lower than measured: warn only
    return test


for _e in ("torchscript", "dynamo"):
    line_rule("ort-max-ir", f"The IR the {_e} exporter writes must be one the onnxruntime release loads.",
               "onnxruntime", _ort_ir(_e),
               f"the {_e} exporter writes IR {{c.ir[{_e}].value}}; onnxruntime {{spec}} loads IR <= {{val}}",
               f"onnxruntime {{spec}} admits {{bad}}, which cannot load the IR {{c.ir[{_e}].value}} the {_e} exporter "
               "writes{pin}",
               "use an onnxruntime that loads that IR, or a lower opset (TorchScript's IR follows the opset)",
               when=lambda c, e=_e: c.ir.get(e) is not None, also=lambda c, e=_e: [c.ir[e]],
               # an older torch candidate writes an IR some ORT candidate loads: not every pair breaks
               partial=lambda c, e=_e: any(F.ORT_MAX_IR[o].value >= c.ir_min[e].value for o in c.c["onnxruntime"]))
line_rule("onnx-max-opset", "The onnx package knows opsets up to its last released one (checker, converter).",
           "onnx", lambda c, l: F.ONNX_MAX_OPSET[l] if F.ONNX_MAX_OPSET[l].value < c.t.opset else None,
           "onnx {spec} knows opsets up to {val}; its checker and version converter do not know opset {t.opset}",
           "onnx {spec} admits {bad}, which do not know opset {t.opset}{pin}",
           "use an onnx that knows opset {t.opset}", soft=lambda c: True)


line_rule("onnx-max-ir", "onnx.checker rejects models whose IR is newer than the onnx package's IR_VERSION.", "onnx",
           lambda c, l: F.ONNX_IR[l] if F.ONNX_IR[l].value < c.ir_max else None,
           "exports write IR {c.ir_max}, but onnx {spec} has IR_VERSION {val}: onnx.checker rejects them",
           "onnx {spec} admits {bad}, whose checker rejects newer IRs than {val}{pin}",
           "use an onnx whose IR_VERSION is at least the exported IR", soft=lambda c: True,
           when=lambda c: c.ir_max > 0, also=lambda c: [Fact(0, F.ONNX_CHECKER_IR)])
for _pkg, _table, _doc in (("onnx", F.ONNX_PROTOBUF, "Each onnx release requires a protobuf range (>=4.25.1 from 1.18, "
                            ">=6.31.1 from 1.23)."), ("onnxruntime", F.ORT_PROTOBUF, "onnxruntime >= 1.27 requires "
                                                      "protobuf>=4.25.8.")):
    line_rule(f"{'ort' if _pkg == 'onnxruntime' else _pkg}-protobuf-floor", _doc, _pkg,
               lambda c, l, tb=_table: None if overlap(c.t.protobuf, tb[l].value, F.PROTOBUF_LINES) else tb[l],
               f"protobuf {{t.protobuf}} is outside what {_pkg} {{spec}} requires (protobuf{{val}})",
               f"{_pkg} {{spec}} admits {{bad}}, which need protobuf{{val}}{{pin}} (or widen protobuf)",
               "set protobuf within '{val}'", lines=lambda c, p=_pkg, tb=_table: [l for l in c.c[p] if l in tb],
               # PyPI metadata: conda-forge's onnx follows its libprotobuf pin instead (unless the floor is a
               # measured import failure), its onnxruntime declares protobuf unpinned
               soft=lambda c, p=_pkg: not c.via_pip(p) and not any(
                   not overlap(c.t.protobuf, F.ONNX_PROTOBUF[l].value, F.PROTOBUF_LINES)
                   for l in c.c["onnx"] if l in F.ONNX_PROTOBUF_RUNTIME),
               when=lambda c, p=_pkg: p == "onnx" or c.via_pip(p))
_CF_PB = F.ONNX_CONDA_FORGE_PROTOBUF
line_rule("conda-onnx-protobuf", "conda-forge's onnx links one libprotobuf; protobuf must admit the matching version.",
           "onnx", lambda c, l: None if any(c.t.protobuf.contains(p) for pl in _CF_PB[l].value
                                            for p in probes(pl, c.t.protobuf)) else _CF_PB[l],
           "conda-forge builds onnx {spec} against protobuf {val}; protobuf {t.protobuf} excludes it",
           "onnx {spec} admits {bad}, which conda-forge builds against a protobuf {t.protobuf} excludes",
           "widen protobuf to admit conda-forge's build of onnx", when=lambda c: c.conda_forge("onnx"),
           lines=lambda c: [l for l in c.c["onnx"] if l in _CF_PB])


def _cuda_majors(fact: Fact) -> tuple[int, ...]:
    return fact.value if isinstance(fact.value, tuple) else (fact.value,)


line_rule("ort-gpu-cuda-major", "onnxruntime-gpu is built for one CUDA major (PyPI: 11 to 1.18, 12 from 1.19, 13 from "
           "1.27).", "onnxruntime", lambda c, l: None if c.want in _cuda_majors(c.ort_cuda[0][l]) else c.ort_cuda[0][l],
           "{c.ort_cuda[1]} {spec} is built for CUDA {val}; the target's cuda is {t.cuda}",
           "{c.ort_cuda[1]} {spec} admits {bad}, not built for CUDA {c.want}{pin}",
           f"pick an onnxruntime-gpu built for CUDA {{c.want}} ({F.CF} §3)",
           when=lambda c: c.ort_cuda is not None,
           lines=lambda c: [l for l in c.c["onnxruntime"] if l in c.ort_cuda[0]], soft=lambda c: bool(c.ort_sources))


def _torch_cudnn(c: RuleContext) -> bool:
    return c.want > 0 and c.variant != "cpu"


def _ort_cudnn(c: RuleContext) -> bool:  # PyPI's table; aarch64 (Jetson) builds link the board's cuDNN
    return c.gpu and c.via_pip("onnxruntime") and not c.aarch64_only


line_rule("cudnn-major-mix", "torch and onnxruntime-gpu in one process need one cuDNN major (9 from 2.4 / 1.19).",
           "onnxruntime", lambda c, o: F.ORT_GPU_CUDNN[o] if c.torch_cudnn - {F.ORT_GPU_CUDNN[o].value} else None,
           "torch {t.torch} uses cuDNN {c.torch_cudnn_text} and onnxruntime-gpu {spec} cuDNN {val}; one process cannot "
           "load both",
           "torch {t.torch} (cuDNN {c.torch_cudnn_text}) and onnxruntime-gpu {spec} admit pairs with different cuDNN "
           "majors (onnxruntime-gpu {bad}: cuDNN {val}){pin}",
           "pair torch<=2.3 with onnxruntime-gpu<=1.18 (cuDNN 8), or torch>=2.4 with onnxruntime-gpu>=1.19 (cuDNN 9)",
           when=lambda c: _torch_cudnn(c) and _ort_cudnn(c),
           lines=lambda c: [o for o in c.c["onnxruntime"] if o in F.ORT_GPU_CUDNN],
           soft=lambda c: c.jetson or bool(c.ort_sources), also=lambda c: [F.TORCH_CUDNN[l] for l in c.c["torch"]][-1:],
           partial=lambda c: any(F.ORT_GPU_CUDNN[o].value in c.torch_cudnn for o in c.c["onnxruntime"]
                                 if o in F.ORT_GPU_CUDNN))
for _pkg, _table, _applies in (("torch", F.TORCH_CUDNN, _torch_cudnn), ("onnxruntime", F.ORT_GPU_CUDNN, _ort_cudnn)):
    line_rule("cudnn-major-declared", f"The cuDNN major the target or host declares must be {_pkg}'s.", _pkg,
               lambda c, l, tb=_table: tb[l] if tb[l].value != major_of(c.cudnn) else None,
               f"{_pkg} {{spec}} uses cuDNN {{val}}, but the target declares cuDNN {{c.cudnn}}",
               f"{_pkg} {{spec}} admits {{bad}}, which use another cuDNN than {{c.cudnn}}{{pin}}",
               f"match the cuDNN major ({F.CF} §3/§4)", soft=lambda c: c.jetson,
               when=lambda c, ok=_applies: major_of(c.cudnn) > 0 and ok(c),
               lines=lambda c, p=_pkg, tb=_table: [l for l in c.c[p] if l in tb])


def _numpy_lines(c: RuleContext) -> list[str]:
    extra = tuple(sorted({line_of(v) for v in named_versions(c.numpy)} - set(F.NUMPY_LINES), key=V))
    return admitted(c.numpy, F.NUMPY_LINES + extra)


_NUMPY1 = "cannot import (built against numpy 1.x)"
for _id, _pkg, _old, _fault, _doc in (
        ("numpy2-ort", "onnxruntime", F.ORT_NUMPY1_ONLY.get, _NUMPY1,
         "onnxruntime <= 1.18 cannot import with numpy 2 (<= 1.17 do not even pin numpy<2)."),
        ("numpy2-torch", "torch", lambda l: F.TORCH_NUMPY2_FIRST if lt(l, F.TORCH_NUMPY2_FIRST.value) else None,
         _NUMPY1, "torch <= 2.2 is built against numpy 1.x."),
        ("numpy2-onnx", "onnx", lambda l: F.ONNX_NUMPY2_FIRST if lt(l, F.ONNX_NUMPY2_FIRST.value) else None,
         "do not officially support (basic import worked in tests)",
         "onnx supports numpy 2 officially from 1.17 (older ones imported fine in tests).")):
    line_rule(_id, _doc, _pkg, lambda c, l, old=_old: old(l),
               f"numpy {{c.numpy}} admits only numpy 2, which {_pkg} {{spec}} {_fault}",
               f"numpy {{c.numpy}} admits numpy 2, which {_pkg} {{bad}} {_fault}; pin numpy<2{{or_bound}}",
               f"pin numpy<2, or use a release of {_pkg} built for numpy 2",
               when=lambda c: any(major_of(n) >= 2 for n in _numpy_lines(c)),
               partial=lambda c: any(major_of(n) < 2 for n in _numpy_lines(c)))


@rule("onnxscript-min")
def _onnxscript_min(c: RuleContext) -> None:
    """The dynamo exporter imports a torch-version-specific onnxscript module: a minimum onnxscript per torch."""
    if "dynamo" not in c.t.exporters or c.t.onnxscript is None:
        return  # unset: rendering adds the implied minimum
    mins = {l: exp(l).onnxscript_min for l in c.c["torch"] if exp(l).onnxscript_min}
    never = [l for l in mins if not overlap(c.t.onnxscript, f">={mins[l]}", F.ONNXSCRIPT_LINES)]
    below = [l for l in mins if overlap(c.t.onnxscript, f"<{mins[l]}", F.ONNXSCRIPT_LINES)]
    impossible = bool(mins) and len(never) == len(mins)
    need = max(mins.values(), key=V, default="")
    c.per_line("torch", list(mins), lambda l: F.TORCH_EXPORTER[l] if l in (never if impossible else below) else None,
               f"onnxscript {c.t.onnxscript} is older than torch {{spec}}'s dynamo exporter needs (onnxscript>={need})",
               f"onnxscript {c.t.onnxscript} admits releases older than torch {{bad}}'s dynamo exporter needs; pin "
               f"onnxscript>={need}",
               f"set onnxscript to '>={need}'", partial=not impossible)


def _onnxscript_needs(c: RuleContext) -> Fact:
    return min((F.ONNXSCRIPT_ONNX_MIN[s] for s in admitted(c.onnxscript, F.ONNXSCRIPT_LINES)), key=lambda f: V(f.value))


line_rule("onnxscript-onnx", "onnxscript (for the dynamo exporter) requires onnx>=1.16, >=1.17 from onnxscript 0.6.",
           "onnx", lambda c, l: _onnxscript_needs(c) if lt(l, _onnxscript_needs(c).value) else None,
           "onnxscript {c.onnxscript} requires onnx>={val}; onnx {spec} is older",
           "onnx {spec} admits {bad}, older than onnxscript {c.onnxscript} requires{pin}", "use onnx>={val}",
           when=lambda c: "dynamo" in c.t.exporters and bool(admitted(c.onnxscript, F.ONNXSCRIPT_LINES)))


@rule("jetson-ort-gpu-wheels")
def _jetson_ort(c: RuleContext) -> None:
    """PyPI has no aarch64 onnxruntime-gpu: a linux-aarch64 GPU target needs a Jetson wheel index or find-links."""
    if c.gpu and c.via_pip("onnxruntime") and "linux-aarch64" in c.t.platforms and not c.ort_sources:
        c.emit("error", "onnxruntime-gpu for linux-aarch64 would come from PyPI, which has no aarch64 onnxruntime-gpu",
               F.ORT_GPU_AARCH64_PYPI.source,
               "add a Jetson wheel index or find_links to pip_options (e.g. https://pypi.jetson-ai-lab.dev/jp6/cu126)")


line_rule("jetson-tensorrt", "onnxruntime's TensorRT EP links TensorRT 8 up to 1.17 and TensorRT 10 from 1.18.",
           "onnxruntime", lambda c, l: F.ORT_TENSORRT[l] if F.ORT_TENSORRT[l].value != major_of(c.trt) else None,
           "onnxruntime {spec}'s TensorRT EP needs TensorRT {val}; the host has TensorRT {c.trt}",
           "onnxruntime {spec} admits {bad}, whose TensorRT EP cannot use TensorRT {c.trt}{pin}",
           "TensorRT 8: onnxruntime<=1.17; TensorRT 10: onnxruntime>=1.18 (the CUDA EP is unaffected)",
           when=lambda c: c.gpu and major_of(c.trt) > 0,
           soft=lambda c: c.t.execution_provider != "TensorrtExecutionProvider")


@rule("jetpack-cuda")
def _jetpack_cuda(c: RuleContext) -> None:
    """JetPack fixes the board's CUDA (JetPack >= 5 can upgrade to CUDA >= 11.8); host and target CUDA must agree."""
    host_cuda = c.host.get("cuda")
    if major_of(host_cuda) and c.want and major_of(host_cuda) != c.want:
        c.emit("error", f"the host provides CUDA {host_cuda} but the target's cuda is {c.t.cuda}",
               "matrix host_provides.cuda (what the machine supplies)", "make cuda and host_provides.cuda agree")
    cuda = host_cuda or c.t.cuda
    if c.jp and cuda:
        (version, fact), (min_jp, min_cuda) = c.jp, F.JETSON_CUDA_UPGRADE.value
        default = fact.value.cuda
        have = ver(cuda)
        upgrade = have is not None and major_of(version) >= int(min_jp) and have >= max(V(min_cuda), V(default))
        if (have is None or have.release[:2] != V(default).release[:2]) and not upgrade:
            c.emit("warning", f"JetPack {version} ships CUDA {default}; CUDA {cuda} is neither that nor a supported "
                   "upgrade", src([fact, F.JETSON_CUDA_UPGRADE]), f"use CUDA {default}, or >={min_cuda} on JetPack 5+")


@rule("jetpack-python")
def _jetpack_python(c: RuleContext) -> None:
    """NVIDIA's Jetson torch wheels are built for the JetPack's default Python only."""
    if c.jp and c.jetson_torch and not c.t.python.contains(f"{c.jp[1].value.python}.0"):
        (version, fact), nvidia = c.jp, any("developer.download.nvidia.com" in u for u in c.urls)
        c.emit("error" if nvidia and fact.confirmed else "warning", f"NVIDIA's torch wheels for JetPack {version} are "
               f"built for Python {fact.value.python}; the target's python is {c.t.python}", fact.source,
               f"set python to '{fact.value.python}'")


@rule("jetpack-stack")
def _jetpack_stack(c: RuleContext) -> None:
    """host_provides l4t/cudnn/tensorrt should be what that JetPack ships."""
    if not c.jp:
        return
    (version, fact), l4t, have = c.jp, F.JETPACK_L4T.get(c.jp[0]), c.host.get("l4t")
    if l4t and have and not (have.upper().lstrip("R") + ".").startswith(l4t.value.lstrip("R") + "."):
        c.emit("warning", f"JetPack {version} is L4T {l4t.value}, but host_provides says l4t {have}", l4t.source,
               "correct host_provides.jetpack or host_provides.l4t")
    for key in ("cudnn", "tensorrt"):
        want, have = getattr(fact.value, key), c.host.get(key)
        if want and have and (ver(have) is None or ver(have).release[:2] != V(want).release[:2]):
            c.emit("warning", f"JetPack {version} ships {key} {want}, but host_provides says {have}", fact.source,
                   f"check host_provides.{key} against the board")


@rule("onnx-opset27-trap")
def _opset27(c: RuleContext) -> None:
    """onnx 1.22's helper.make_model stamps the unreleased opset 27, which onnxruntime <= 1.31 rejects."""
    old = [l for l in c.c["onnxruntime"] if F.ORT_MAX_OPSET[l].value < 27] if "1.22" in c.c["onnx"] else []
    if old:
        c.emit("warning", f"onnx 1.22's helper.make_model stamps opset 27 by default, which onnxruntime {span(old)} "
               "rejects ('Opset 27 is under development')",
               f"{F.ONNX_MAX_OPSET['1.22'].source}; https://github.com/microsoft/onnxruntime/pull/28754; {F.CF} §0.2",
               "pass opset_imports=[onnx.helper.make_opsetid('', 26)] to make_model, or use onnx>=1.23 with "
               "onnxruntime>=1.32")




@rule("ignored-setting")
def _ignored_setting(c: RuleContext) -> None:
    """A setting the target gives that nothing in its env uses (it would be dropped without a word)."""
    options = c.t.pip_options
    if (options.index_url or options.extra_index_urls or options.find_links) and not (c.t.pip or c.t.pip_extra):
        c.emit("warning", "pip_options is set, but nothing in this target comes from pip, so no index or "
               "find-links is used", "matrix (the target's own settings): src/envctl/lock/render.py writes pip options only beside pip requirements",
               "drop pip_options from this target (or its defaults), or list packages under pip / pip_extra")
