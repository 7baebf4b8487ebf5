"""The compatibility rules themselves, registered into engine.RULES in check order.

A rule is declared here and only here: its id, its one-line description (a
`line_rule` argument, or the docstring of a `@rule` function) and its check,
whose findings carry severity, message, source and remedy. The facts it cites,
each with its source, are in facts.py. The rest follows from the registration:
`envctl matrix check` prints the findings, docs/rules.md's table is
`describe_rules()` (tests/project/test_docs.py), and tests/rules/test_factsheet.py checks
that every rule fires somewhere and cites a source that resolves.
"""

from __future__ import annotations

from typing import Callable

from packaging.version import Version

from envctl.rules import facts
from envctl.rules.facts import Fact
from envctl.rules.engine import (  # shared helpers of the engine
    RULES,
    Rule,
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
def _not_yet_known(ctx: RuleContext) -> None:
    """A spec admits no release the facts know (newer or older): reported once, not checked."""
    for pkg, lines in KNOWN.items():
        spec = ctx.target.spec(pkg)
        if spec is None or admitted(spec, lines):
            continue
        named = named_versions(spec)
        where = ("newer than" if newer_than(spec, lines) else
                 "older than" if named and all(v < Version(f"{lines[0]}.0") for v in named) else "outside what")
        ctx.emit("warning", f"{pkg} {spec} is {where} envctl's rules know ({span(lines)}); not checked",
               f"envctl facts.py: known {pkg} lines {span(lines)} ({facts.CF})",
               f"check {pkg} {spec} by hand, or update envctl's facts")
    if ctx.host.get("jetpack") and ctx.jetpack is None:
        ctx.emit("warning", f"JetPack {ctx.host['jetpack']} is not in envctl's facts; Jetson rules not checked",
               f"envctl facts.py JETPACK ({facts.CF} §7)", "check the JetPack stack by hand")


def _python_rule(pkg: str) -> Callable[[RuleContext], None]:
    def check(ctx: RuleContext) -> None:
        py, lines, table = ctx.raw["python"], ctx.raw[pkg], PY[pkg]
        if not py or not lines or any(py_ok(p, table[line]) for line in lines for p in py):
            return
        ranges = ", ".join(f"{line}: {table[line].value[0]}–{table[line].value[1]}" for line in lines[-2:])
        pip = ctx.via_pip(pkg)
        ctx.emit("error" if pip else "warning", f"{pkg} {ctx.target.spec(pkg)} has no wheel for Python {ctx.target.python} "
               f"(Python {ranges})" + ("" if pip else "; PyPI's range, conda builds may differ"),
               src(table[line] for line in lines), f"use a Python in {pkg}'s range, or another {pkg}")
    return check


for _pkg, _id in (("torch", "torch-python"), ("onnx", "onnx-python"), ("onnxruntime", "ort-python")):
    RULES.append(Rule(_id, f"{_pkg} has wheels only for some Pythons (PyPI cp tags).", _python_rule(_pkg)))


@rule("osx-no-cuda")
def _osx(ctx: RuleContext) -> None:
    """macOS builds of torch and onnxruntime have no CUDA."""
    if any(p.startswith("osx") for p in ctx.target.platforms) and (ctx.target.cuda or ctx.gpu):
        ctx.emit("error", "the target asks for CUDA or onnxruntime-gpu on macOS; macOS builds are CPU only",
               f"{facts.CF} §6 (conda-forge: osx pytorch and onnxruntime are cpu builds)",
               "set cuda: none and onnxruntime_build: cpu for macOS")


_VARIANTS = facts.TORCH_VARIANTS
line_rule("torch-cuda-variant", "The CUDA build of torch a target asks for must exist for that release.", "torch",
           lambda ctx, line: None if ctx.variant in _VARIANTS[line].value else _VARIANTS[line],
           "torch {spec} has no {ctx.variant} build (it has {val})",
           "torch {spec} admits {bad}, which have no {ctx.variant} build{pin}",
           "pick a download.pytorch.org index that torch {spec} is built for",
           when=lambda ctx: ctx.variant_cuda > 0, lines=lambda ctx: [line for line in ctx.candidates["torch"] if line in _VARIANTS])
line_rule("torch-cuda-variant", "torch's CUDA build must have the target's CUDA major.", "torch",
           lambda ctx, line: _VARIANTS[line] if ctx.variant_cuda != ctx.want else None,
           "torch's {ctx.variant} build is CUDA {ctx.variant_cuda}, but the target's cuda is {target.cuda}",
           "torch's {ctx.variant} build does not match the target's cuda {target.cuda}",
           "use the download.pytorch.org index for CUDA {ctx.want}, or change cuda",
           when=lambda ctx: ctx.variant_cuda > 0 and ctx.want > 0,
           lines=lambda ctx: [line for line in ctx.candidates["torch"] if line in _VARIANTS])
line_rule("torch-cuda-variant", "PyPI's default linux torch wheel is one CUDA build (12.x from 2.1, 13.x from 2.11).",
           "torch", lambda ctx, line: facts.TORCH_PYPI_CUDA[line] if major_of(facts.TORCH_PYPI_CUDA[line].value) != ctx.want else None,
           "torch {spec} from PyPI is a CUDA {val} build; the target's cuda is {target.cuda}",
           "torch {spec} admits {bad}, whose PyPI wheels are not CUDA {ctx.want}{pin}",
           "take torch from download.pytorch.org/whl/cu{ctx.want}x (pip_options.index_url)",
           when=lambda ctx: ctx.want > 0 and ctx.via_pip("torch") and ctx.variant is None and not ctx.jetson_torch
           and "linux-64" in ctx.target.platforms)
line_rule("torch-cuda-variant", "conda-forge builds pytorch for some CUDA majors only.", "torch",
           lambda ctx, line: None if ctx.want in facts.TORCH_CONDA_FORGE_CUDA[line].value else facts.TORCH_CONDA_FORGE_CUDA[line],
           "conda-forge has no CUDA {ctx.want} build of pytorch {spec} (CUDA majors {val})",
           "pytorch {spec} admits {bad}, which conda-forge builds without CUDA {ctx.want}{pin}",
           "take torch from download.pytorch.org through pip, or change cuda",
           when=lambda ctx: ctx.want > 0 and ctx.conda_forge("torch") and not all(p.startswith("osx") for p in ctx.target.platforms),
           lines=lambda ctx: [line for line in ctx.candidates["torch"] if line in facts.TORCH_CONDA_FORGE_CUDA])
line_rule("torch-conda-channel", "The `pytorch` Anaconda channel stopped at torch 2.5.", "torch",
           lambda ctx, line: facts.PYTORCH_CHANNEL_LAST if lt(facts.PYTORCH_CHANNEL_LAST.value, line) else None,
           "torch {spec} is not on the pytorch channel (its last release is {val})",
           "torch {spec} admits {bad}, newer than the pytorch channel's last release{pin}",
           "use conda-forge, or torch wheels through pip",
           when=lambda ctx: not ctx.via_pip("torch") and any(ch.rstrip("/").split("/")[-1] == "pytorch"
                                                         for ch in ctx.target.channels))
line_rule("dynamo-availability", "torch.onnx.export(dynamo=True) exists from torch 2.5 (2.1-2.4: beta dynamo_export).",
           "torch", lambda ctx, line: None if exp(line).dynamo == "export" else facts.TORCH_EXPORTER[line],
           "torch {spec} has no torch.onnx.export(dynamo=True) (2.1–2.4 have only the beta dynamo_export)",
           "torch {spec} admits {bad}, which have no torch.onnx.export(dynamo=True){pin}",
           "use torch>=2.5, or drop the dynamo exporter", when=lambda ctx: "dynamo" in ctx.target.exporters)
# Above the TorchScript cap torch 1.13/2.0 raise ValueError and >= 2.1 only warn.
line_rule("torch-exporter-opset", "The opset must be within the TorchScript exporter's cap (17 in 2.1-2.3, 20 later).",
           "torch", lambda ctx, line: Fact(exp(line).ts_max, facts.TORCH_EXPORTER[line].source) if ctx.target.opset > exp(line).ts_max
           else None,
           "opset {target.opset} is above torch {spec}'s TorchScript exporter maximum ({val})",
           "torch {spec} admits {bad}, whose TorchScript exporter supports opset <= {val}{pin}",
           "lower the opset, or use the dynamo exporter for opsets above the TorchScript cap",
           when=lambda ctx: "torchscript" in ctx.target.exporters,
           soft=lambda ctx: not all(exp(line).ts_over_cap_raises for line in ctx.candidates["torch"]),
           also=lambda ctx: [] if all(exp(line).ts_over_cap_raises for line in ctx.candidates["torch"]) else [Fact(0, facts.TS_CAP_SOURCE)])
line_rule("torch-exporter-opset", "The opset must be at most torch's ONNX_MAX_OPSET for the dynamo exporter.", "torch",
           lambda ctx, line: Fact(exp(line).max_opset, facts.TORCH_EXPORTER[line].source) if ctx.target.opset > exp(line).max_opset else None,
           "opset {target.opset} is above torch {spec}'s ONNX_MAX_OPSET ({val}) for the dynamo exporter; behaviour "
           "unverified",
           "torch {spec} admits {bad}, whose dynamo exporter supports opset <= {val}{pin}",
           "lower the opset, or use a newer torch", when=lambda ctx: "dynamo" in ctx.target.exporters, soft=lambda ctx: True,
           lines=lambda ctx: [line for line in ctx.candidates["torch"] if exp(line).dynamo == "export"])


@rule("dynamo-opset-floor")
def _dynamo_floor(ctx: RuleContext) -> None:
    """torch >= 2.9's dynamo exporter builds at opset 18 and version-converts lower requests."""
    builds = {line: opset for line in ctx.candidates["torch"] if (opset := exp(line).dynamo_build_opset)} \
        if "dynamo" in ctx.target.exporters else {}
    lines, floor = list(builds), min(builds.values(), default=0)
    if lines and ctx.target.opset < floor:
        old = [line for line in ctx.candidates["onnxruntime"] if facts.ORT_MAX_OPSET[line].value < floor]
        ctx.emit("warning", f"torch {span(lines)}'s dynamo exporter builds at opset {floor} and converts down to "
               f"{ctx.target.opset}; if that fails the model stays at {floor}"
               + (f", which onnxruntime {span(old)} cannot load" if old else ""),
               facts.TORCH_EXPORTER[lines[-1]].source, f"export at opset>={floor} with dynamo, or check the exported opset")


line_rule("ort-max-opset", "onnxruntime loads models only up to the last released opset of the onnx it bundles.",
           "onnxruntime", lambda ctx, line: facts.ORT_MAX_OPSET[line] if facts.ORT_MAX_OPSET[line].value < ctx.target.opset else None,
           "opset {target.opset} is above what onnxruntime {spec} loads (max opset {val})",
           "onnxruntime {spec} admits {bad}, which cannot load opset {target.opset}{pin}",
           "lower the opset, or use an onnxruntime that loads opset {target.opset}")


def _ort_ir(exporter: str) -> Callable[[RuleContext, str], Fact | None]:
    def test(ctx: RuleContext, o: str) -> Fact | None:
        ir, disputed = ctx.ir_fact(exporter).value, facts.ORT_MAX_IR_DISPUTED.get(o)
        if facts.ORT_MAX_IR[o].value < ir:
            return facts.ORT_MAX_IR[o]
        return disputed if disputed and disputed.value < ir else None  # docs lower than measured: warn only
    return test


def _ort_max_ir_rule(exporter: str) -> None:  # a function, so the lambdas close over this exporter
    line_rule("ort-max-ir", f"The IR the {exporter} exporter writes must be one the onnxruntime release loads.",
               "onnxruntime", _ort_ir(exporter),
               f"the {exporter} exporter writes IR {{ctx.ir[{exporter}].value}}; onnxruntime {{spec}} loads IR <= {{val}}",
               f"onnxruntime {{spec}} admits {{bad}}, which cannot load the IR {{ctx.ir[{exporter}].value}} the {exporter} exporter "
               "writes{pin}",
               "use an onnxruntime that loads that IR, or a lower opset (TorchScript's IR follows the opset)",
               when=lambda ctx: ctx.ir.get(exporter) is not None, also=lambda ctx: [ctx.ir_fact(exporter)],
               # an older torch candidate writes an IR some ORT candidate loads: not every pair breaks
               partial=lambda ctx: any(facts.ORT_MAX_IR[o].value >= ctx.ir_fact(exporter, oldest=True).value for o in ctx.candidates["onnxruntime"]))


for exporterxporter in ("torchscript", "dynamo"):
    _ort_max_ir_rule(exporterxporter)
line_rule("onnx-max-opset", "The onnx package knows opsets up to its last released one (checker, converter).",
           "onnx", lambda ctx, line: facts.ONNX_MAX_OPSET[line] if facts.ONNX_MAX_OPSET[line].value < ctx.target.opset else None,
           "onnx {spec} knows opsets up to {val}; its checker and version converter do not know opset {target.opset}",
           "onnx {spec} admits {bad}, which do not know opset {target.opset}{pin}",
           "use an onnx that knows opset {target.opset}", soft=lambda ctx: True)


line_rule("onnx-max-ir", "onnx.checker rejects models whose IR is newer than the onnx package's IR_VERSION.", "onnx",
           lambda ctx, line: facts.ONNX_IR[line] if facts.ONNX_IR[line].value < ctx.ir_max else None,
           "exports write IR {ctx.ir_max}, but onnx {spec} has IR_VERSION {val}: onnx.checker rejects them",
           "onnx {spec} admits {bad}, whose checker rejects newer IRs than {val}{pin}",
           "use an onnx whose IR_VERSION is at least the exported IR", soft=lambda ctx: True,
           when=lambda ctx: ctx.ir_max > 0, also=lambda ctx: [Fact(0, facts.ONNX_CHECKER_IR)])
def _protobuf_floor_rule(pkg: str, table: dict[str, Fact], doc: str) -> None:
    line_rule(f"{'ort' if pkg == 'onnxruntime' else pkg}-protobuf-floor", doc, pkg,
               lambda ctx, line: None if overlap(ctx.target.protobuf, table[line].value, facts.PROTOBUF_LINES) else table[line],
               f"protobuf {{target.protobuf}} is outside what {pkg} {{spec}} requires (protobuf{{val}})",
               f"{pkg} {{spec}} admits {{bad}}, which need protobuf{{val}}{{pin}} (or widen protobuf)",
               "set protobuf within '{val}'", lines=lambda ctx: [line for line in ctx.candidates[pkg] if line in table],
               # PyPI metadata: conda-forge's onnx follows its libprotobuf pin instead (unless the floor is a
               # measured import failure), its onnxruntime declares protobuf unpinned
               soft=lambda ctx: not ctx.via_pip(pkg) and not any(
                   not overlap(ctx.target.protobuf, facts.ONNX_PROTOBUF[line].value, facts.PROTOBUF_LINES)
                   for line in ctx.candidates["onnx"] if line in facts.ONNX_PROTOBUF_RUNTIME),
               when=lambda ctx: pkg == "onnx" or ctx.via_pip(pkg))


for _pkg, _table, _doc in (("onnx", facts.ONNX_PROTOBUF, "Each onnx release requires a protobuf range (>=4.25.1 from 1.18, "
                            ">=6.31.1 from 1.23)."), ("onnxruntime", facts.ORT_PROTOBUF, "onnxruntime >= 1.27 requires "
                                                      "protobuf>=4.25.8.")):
    _protobuf_floor_rule(_pkg, _table, _doc)
_CF_PB = facts.ONNX_CONDA_FORGE_PROTOBUF
line_rule("conda-onnx-protobuf", "conda-forge's onnx links one libprotobuf; protobuf must admit the matching version.",
           "onnx", lambda ctx, line: None if any(ctx.target.protobuf.contains(p) for pl in _CF_PB[line].value
                                            for p in probes(pl, ctx.target.protobuf)) else _CF_PB[line],
           "conda-forge builds onnx {spec} against protobuf {val}; protobuf {target.protobuf} excludes it",
           "onnx {spec} admits {bad}, which conda-forge builds against a protobuf {target.protobuf} excludes",
           "widen protobuf to admit conda-forge's build of onnx", when=lambda ctx: ctx.conda_forge("onnx"),
           lines=lambda ctx: [line for line in ctx.candidates["onnx"] if line in _CF_PB])


def _cuda_majors(fact: Fact) -> tuple[int, ...]:
    return fact.value if isinstance(fact.value, tuple) else (fact.value,)


line_rule("ort-gpu-cuda-major", "onnxruntime-gpu is built for one CUDA major (PyPI: 11 to 1.18, 12 from 1.19, 13 from "
           "1.27).", "onnxruntime", lambda ctx, line: None if ctx.want in _cuda_majors(ctx.ort_cuda_table()[line]) else ctx.ort_cuda_table()[line],
           "{ctx.ort_cuda[1]} {spec} is built for CUDA {val}; the target's cuda is {target.cuda}",
           "{ctx.ort_cuda[1]} {spec} admits {bad}, not built for CUDA {ctx.want}{pin}",
           f"pick an onnxruntime-gpu built for CUDA {{ctx.want}} ({facts.CF} §3)",
           when=lambda ctx: ctx.ort_cuda is not None,
           lines=lambda ctx: [line for line in ctx.candidates["onnxruntime"] if line in ctx.ort_cuda_table()], soft=lambda ctx: bool(ctx.ort_sources))


def _torch_cudnn(ctx: RuleContext) -> bool:
    return ctx.want > 0 and ctx.variant != "cpu"


def _ort_cudnn(ctx: RuleContext) -> bool:  # PyPI's table; aarch64 (Jetson) builds link the board's cuDNN
    return ctx.gpu and ctx.via_pip("onnxruntime") and not ctx.aarch64_only


line_rule("cudnn-major-mix", "torch and onnxruntime-gpu in one process need one cuDNN major (9 from 2.4 / 1.19).",
           "onnxruntime", lambda ctx, o: facts.ORT_GPU_CUDNN[o] if ctx.torch_cudnn - {facts.ORT_GPU_CUDNN[o].value} else None,
           "torch {target.torch} uses cuDNN {ctx.torch_cudnn_text} and onnxruntime-gpu {spec} cuDNN {val}; one process cannot "
           "load both",
           "torch {target.torch} (cuDNN {ctx.torch_cudnn_text}) and onnxruntime-gpu {spec} admit pairs with different cuDNN "
           "majors (onnxruntime-gpu {bad}: cuDNN {val}){pin}",
           "pair torch<=2.3 with onnxruntime-gpu<=1.18 (cuDNN 8), or torch>=2.4 with onnxruntime-gpu>=1.19 (cuDNN 9)",
           when=lambda ctx: _torch_cudnn(ctx) and _ort_cudnn(ctx),
           lines=lambda ctx: [o for o in ctx.candidates["onnxruntime"] if o in facts.ORT_GPU_CUDNN],
           soft=lambda ctx: ctx.jetson or bool(ctx.ort_sources), also=lambda ctx: [facts.TORCH_CUDNN[line] for line in ctx.candidates["torch"]][-1:],
           partial=lambda ctx: any(facts.ORT_GPU_CUDNN[o].value in ctx.torch_cudnn for o in ctx.candidates["onnxruntime"]
                                 if o in facts.ORT_GPU_CUDNN))
def _cudnn_declared_rule(pkg: str, table: dict[str, Fact], applies: Callable[[RuleContext], bool]) -> None:
    line_rule("cudnn-major-declared", f"The cuDNN major the target or host declares must be {pkg}'s.", pkg,
               lambda ctx, line: table[line] if table[line].value != major_of(ctx.cudnn) else None,
               f"{pkg} {{spec}} uses cuDNN {{val}}, but the target declares cuDNN {{ctx.cudnn}}",
               f"{pkg} {{spec}} admits {{bad}}, which use another cuDNN than {{ctx.cudnn}}{{pin}}",
               f"match the cuDNN major ({facts.CF} §3/§4)", soft=lambda ctx: ctx.jetson,
               when=lambda ctx: major_of(ctx.cudnn) > 0 and applies(ctx),
               lines=lambda ctx: [line for line in ctx.candidates[pkg] if line in table])


for _pkg, _table, _applies in (("torch", facts.TORCH_CUDNN, _torch_cudnn), ("onnxruntime", facts.ORT_GPU_CUDNN, _ort_cudnn)):
    _cudnn_declared_rule(_pkg, _table, _applies)


def _numpy_lines(ctx: RuleContext) -> list[str]:
    extra = tuple(sorted({line_of(v) for v in named_versions(ctx.numpy)} - set(facts.NUMPY_LINES), key=Version))
    return admitted(ctx.numpy, facts.NUMPY_LINES + extra)


_NUMPY1 = "cannot import (built against numpy 1.x)"
def _numpy2_rule(rule_id: str, pkg: str, old: Callable[[str], Fact | None], fault: str, doc: str) -> None:
    line_rule(rule_id, doc, pkg, lambda ctx, line: old(line),
               f"numpy {{ctx.numpy}} admits only numpy 2, which {pkg} {{spec}} {fault}",
               f"numpy {{ctx.numpy}} admits numpy 2, which {pkg} {{bad}} {fault}; pin numpy<2{{or_bound}}",
               f"pin numpy<2, or use a release of {pkg} built for numpy 2",
               when=lambda ctx: any(major_of(n) >= 2 for n in _numpy_lines(ctx)),
               partial=lambda ctx: any(major_of(n) < 2 for n in _numpy_lines(ctx)))


for _id, _pkg, _old, _fault, _doc in (
        ("numpy2-ort", "onnxruntime", facts.ORT_NUMPY1_ONLY.get, _NUMPY1,
         "onnxruntime <= 1.18 cannot import with numpy 2 (<= 1.17 do not even pin numpy<2)."),
        ("numpy2-torch", "torch", lambda line: facts.TORCH_NUMPY2_FIRST if lt(line, facts.TORCH_NUMPY2_FIRST.value) else None,
         _NUMPY1, "torch <= 2.2 is built against numpy 1.x."),
        ("numpy2-onnx", "onnx", lambda line: facts.ONNX_NUMPY2_FIRST if lt(line, facts.ONNX_NUMPY2_FIRST.value) else None,
         "do not officially support (basic import worked in tests)",
         "onnx supports numpy 2 officially from 1.17 (older ones imported fine in tests).")):
    _numpy2_rule(_id, _pkg, _old, _fault, _doc)


@rule("onnxscript-min")
def _onnxscript_min(ctx: RuleContext) -> None:
    """The dynamo exporter imports a torch-version-specific onnxscript module: a minimum onnxscript per torch."""
    if "dynamo" not in ctx.target.exporters or ctx.target.onnxscript is None:
        return  # unset: rendering adds the implied minimum
    mins = {line: least for line in ctx.candidates["torch"] if (least := exp(line).onnxscript_min)}
    never = [line for line in mins if not overlap(ctx.target.onnxscript, f">={mins[line]}", facts.ONNXSCRIPT_LINES)]
    below = [line for line in mins if overlap(ctx.target.onnxscript, f"<{mins[line]}", facts.ONNXSCRIPT_LINES)]
    impossible = bool(mins) and len(never) == len(mins)
    need = max(mins.values(), key=Version, default="")
    ctx.per_line("torch", list(mins), lambda line: facts.TORCH_EXPORTER[line] if line in (never if impossible else below) else None,
               f"onnxscript {ctx.target.onnxscript} is older than torch {{spec}}'s dynamo exporter needs (onnxscript>={need})",
               f"onnxscript {ctx.target.onnxscript} admits releases older than torch {{bad}}'s dynamo exporter needs; pin "
               f"onnxscript>={need}",
               f"set onnxscript to '>={need}'", partial=not impossible)


def _onnxscript_needs(ctx: RuleContext) -> Fact:
    return min((facts.ONNXSCRIPT_ONNX_MIN[s] for s in admitted(ctx.onnxscript, facts.ONNXSCRIPT_LINES)), key=lambda f: Version(f.value))


line_rule("onnxscript-onnx", "onnxscript (for the dynamo exporter) requires onnx>=1.16, >=1.17 from onnxscript 0.6.",
           "onnx", lambda ctx, line: _onnxscript_needs(ctx) if lt(line, _onnxscript_needs(ctx).value) else None,
           "onnxscript {ctx.onnxscript} requires onnx>={val}; onnx {spec} is older",
           "onnx {spec} admits {bad}, older than onnxscript {ctx.onnxscript} requires{pin}", "use onnx>={val}",
           when=lambda ctx: "dynamo" in ctx.target.exporters and bool(admitted(ctx.onnxscript, facts.ONNXSCRIPT_LINES)))


@rule("jetson-ort-gpu-wheels")
def _jetson_ort(ctx: RuleContext) -> None:
    """PyPI has no aarch64 onnxruntime-gpu: a linux-aarch64 GPU target needs a Jetson wheel index or find-links."""
    if ctx.gpu and ctx.via_pip("onnxruntime") and "linux-aarch64" in ctx.target.platforms and not ctx.ort_sources:
        ctx.emit("error", "onnxruntime-gpu for linux-aarch64 would come from PyPI, which has no aarch64 onnxruntime-gpu",
               facts.ORT_GPU_AARCH64_PYPI.source,
               "add a Jetson wheel index or find_links to pip_options (e.g. https://pypi.jetson-ai-lab.dev/jp6/cu126)")


line_rule("jetson-tensorrt", "onnxruntime's TensorRT EP links TensorRT 8 up to 1.17 and TensorRT 10 from 1.18.",
           "onnxruntime", lambda ctx, line: facts.ORT_TENSORRT[line] if facts.ORT_TENSORRT[line].value != major_of(ctx.trt) else None,
           "onnxruntime {spec}'s TensorRT EP needs TensorRT {val}; the host has TensorRT {ctx.trt}",
           "onnxruntime {spec} admits {bad}, whose TensorRT EP cannot use TensorRT {ctx.trt}{pin}",
           "TensorRT 8: onnxruntime<=1.17; TensorRT 10: onnxruntime>=1.18 (the CUDA EP is unaffected)",
           when=lambda ctx: ctx.gpu and major_of(ctx.trt) > 0,
           soft=lambda ctx: ctx.target.execution_provider != "TensorrtExecutionProvider")


@rule("jetpack-cuda")
def _jetpack_cuda(ctx: RuleContext) -> None:
    """JetPack fixes the board's CUDA (JetPack >= 5 can upgrade to CUDA >= 11.8); host and target CUDA must agree."""
    host_cuda = ctx.host.get("cuda")
    if major_of(host_cuda) and ctx.want and major_of(host_cuda) != ctx.want:
        ctx.emit("error", f"the host provides CUDA {host_cuda} but the target's cuda is {ctx.target.cuda}",
               "matrix host_provides.cuda (what the machine supplies)", "make cuda and host_provides.cuda agree")
    cuda = host_cuda or ctx.target.cuda
    if ctx.jetpack and cuda:
        (version, fact), (min_jp, min_cuda) = ctx.jetpack, facts.JETSON_CUDA_UPGRADE.value
        default = fact.value.cuda
        have = ver(cuda)
        upgrade = have is not None and major_of(version) >= int(min_jp) and have >= max(Version(min_cuda), Version(default))
        if (have is None or have.release[:2] != Version(default).release[:2]) and not upgrade:
            ctx.emit("warning", f"JetPack {version} ships CUDA {default}; CUDA {cuda} is neither that nor a supported "
                   "upgrade", src([fact, facts.JETSON_CUDA_UPGRADE]), f"use CUDA {default}, or >={min_cuda} on JetPack 5+")


@rule("jetpack-python")
def _jetpack_python(ctx: RuleContext) -> None:
    """NVIDIA's Jetson torch wheels are built for the JetPack's default Python only."""
    if ctx.jetpack and ctx.jetson_torch and not ctx.target.python.contains(f"{ctx.jetpack[1].value.python}.0"):
        (version, fact), nvidia = ctx.jetpack, any("developer.download.nvidia.com" in u for u in ctx.urls)
        ctx.emit("error" if nvidia and fact.confirmed else "warning", f"NVIDIA's torch wheels for JetPack {version} are "
               f"built for Python {fact.value.python}; the target's python is {ctx.target.python}", fact.source,
               f"set python to '{fact.value.python}'")


@rule("jetpack-stack")
def _jetpack_stack(ctx: RuleContext) -> None:
    """host_provides l4t/cudnn/tensorrt should be what that JetPack ships."""
    if not ctx.jetpack:
        return
    (version, fact), l4t, have = ctx.jetpack, facts.JETPACK_L4T.get(ctx.jetpack[0]), ctx.host.get("l4t")
    if l4t and have and not (have.upper().lstrip("R") + ".").startswith(l4t.value.lstrip("R") + "."):
        ctx.emit("warning", f"JetPack {version} is L4T {l4t.value}, but host_provides says l4t {have}", l4t.source,
               "correct host_provides.jetpack or host_provides.l4t")
    for key in ("cudnn", "tensorrt"):
        want, have = getattr(fact.value, key), ctx.host.get(key)
        if want and have and ((found := ver(have)) is None or found.release[:2] != Version(want).release[:2]):
            ctx.emit("warning", f"JetPack {version} ships {key} {want}, but host_provides says {have}", fact.source,
                   f"check host_provides.{key} against the board")


@rule("onnx-opset27-trap")
def _opset27(ctx: RuleContext) -> None:
    """onnx 1.22's helper.make_model stamps the unreleased opset 27, which onnxruntime <= 1.31 rejects."""
    old = [line for line in ctx.candidates["onnxruntime"] if facts.ORT_MAX_OPSET[line].value < 27] if "1.22" in ctx.candidates["onnx"] else []
    if old:
        ctx.emit("warning", f"onnx 1.22's helper.make_model stamps opset 27 by default, which onnxruntime {span(old)} "
               "rejects ('Opset 27 is under development')",
               f"{facts.ONNX_MAX_OPSET['1.22'].source}; https://github.com/microsoft/onnxruntime/pull/28754; {facts.CF} §0.2",
               "pass opset_imports=[onnx.helper.make_opsetid('', 26)] to make_model, or use onnx>=1.23 with "
               "onnxruntime>=1.32")




@rule("ignored-setting")
def _ignored_setting(ctx: RuleContext) -> None:
    """A setting the target gives that nothing in its env uses (it would be dropped without a word)."""
    options = ctx.target.pip_options
    if (options.index_url or options.extra_index_urls or options.find_links) and not (ctx.target.pip or ctx.target.pip_extra):
        ctx.emit("warning", "pip_options is set, but nothing in this target comes from pip, so no index or "
               "find-links is used", "matrix (the target's own settings): src/envctl/lock/render.py writes pip options only beside pip requirements",
               "drop pip_options from this target (or its defaults), or list packages under pip / pip_extra")
