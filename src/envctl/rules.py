"""Compatibility rules: what a matrix target cannot do, found before any download.

Semantics (the contract `envctl matrix check` prints):

* A version spec admits a set of KNOWN release lines: the major.minor lines in
  `facts.py` it `contains` (probing each line's first and last patch and every
  version the spec names, so an exact local build such as torch
  "2.1.0a0+41361538.nv23.06" lands on the 2.1 line).
* torch, onnx and onnxruntime candidates are narrowed by the target's Python
  where the facts give wheel Python ranges: a solver cannot pick a release
  without a wheel for that Python. Only when nothing is left is that a finding
  (an error from pip; a warning from a conda channel, whose builds may cover
  other Pythons than PyPI's).
* A rule over packages A x B looks at every candidate combination. If EVERY
  combination breaks: "error" when all facts used are confirmed, else
  "warning". If only SOME break: a "warning" naming the safe bound.
* Facts read from PyPI wheels (Python ranges, declared protobuf floors,
  onnxruntime-gpu CUDA/cuDNN) only warn where the package comes from a source
  they may not describe (a conda channel, a Jetson wheel index). Messages on
  unconfirmed facts say "UNCONFIRMED".
* A spec that admits no known release gives one "not-yet-known" warning and
  is not checked; never an error.
* Packages left unset count as what rendering adds (`implied_requirements`:
  onnxscript for the dynamo exporter, numpy<2 for old onnxruntime/torch),
  else as any version.
* The "dynamo" exporter means `torch.onnx.export(..., dynamo=True)`.

Rules are registered in `RULES` with an id; most are declarative `_line_rule`
entries (judge each candidate line of one package against a fact), the rest
small functions. Each has a one-line description (`describe_rules()`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version as V

from . import facts as F
from .facts import Fact
from .matrix import Matrix, Target
from .versions import ANY, Spec


@dataclass(frozen=True)
class Finding:
    target: str
    severity: str  # "error" (cannot work) or "warning" (risky, unconfirmed, not yet known)
    rule: str
    message: str
    source: str
    remedy: str = ""


@dataclass(frozen=True)
class Implied:
    package: str
    spec: Spec
    reason: str
    source: str


# --- versions and release lines ----------------------------------------------
def _line(v: V) -> str:
    rel = v.release + (0,)
    return f"{rel[0]}.{rel[1]}"


def _named(spec: Spec | str) -> list[V]:
    """The versions a spec's clauses name."""
    try:
        clauses = SpecifierSet(spec.pip() if isinstance(spec, Spec) else spec)
    except InvalidSpecifier:
        return []
    out = []
    for clause in clauses:
        try:
            out.append(V(clause.version.removesuffix(".*")))
        except InvalidVersion:
            pass
    return out


def _has(spec: Spec | str, v: V) -> bool:
    return spec.contains(v) if isinstance(spec, Spec) else SpecifierSet(spec).contains(v, prereleases=True)


def _probes(line: str, *specs: Spec | str) -> list[V]:
    out = [V(f"{line}.0"), V(f"{line}.9999")]
    for v in (v for s in specs for v in _named(s) if _line(v) == line):
        rel = (v.release + (0, 0, 0))[:3]
        out += [v, V(f"{rel[0]}.{rel[1]}.{rel[2] + 1}")]  # a bound and just past it
    return out


def admitted(spec: Spec, lines: Iterable[str]) -> list[str]:
    """The known release lines `spec` admits."""
    return [l for l in lines if any(spec.contains(p) for p in _probes(l, spec))]


def _overlap(a: Spec | str, b: str, lines: Iterable[str]) -> bool:
    """Whether some version satisfies both specs (probed per line)."""
    every = list(lines) + sorted({_line(v) for s in (a, b) for v in _named(s)})
    return any(_has(a, p) and _has(b, p) for l in every for p in _probes(l, a, b))


def _lt(a: str, b: str) -> bool:
    return V(a) < V(b)


def _span(lines: Iterable[str]) -> str:
    ls = sorted(set(lines), key=V)
    return ls[0] if len(ls) == 1 else f"{ls[0]}–{ls[-1]}"


def _runs(sub: Iterable[str], lines: list[str]) -> str:
    """`sub` as runs of consecutive `lines`: "1.13, 2.8–2.14"."""
    sub, runs, run = set(sub), [], []
    for l in lines + [""]:
        if l in sub:
            run.append(l)
        elif run:
            runs.append(_span(run))
            run = []
    return ", ".join(runs)


def _bound(pkg: str, bad: list[str], good: list[str]) -> str:
    if _lt(bad[-1], good[0]):
        return f"{pkg}>={good[0]}"
    return f"{pkg}<{bad[0]}" if _lt(good[-1], bad[0]) else f"{pkg} {_span(good)}"


def _newer(spec: Spec, lines: tuple[str, ...]) -> bool:
    named = _named(spec)
    return bool(named) and all(v > V(f"{lines[-1]}.9999") for v in named)


def _py_ok(py: str, fact: Fact) -> bool:
    return V(fact.value[0]) <= V(py) <= V(fact.value[1])


def _major(text: str | None) -> int:
    """Leading integer of a version-ish string (host_provides values are free text); 0 if none."""
    m = re.match(r"\d+", str(text or ""))
    return int(m.group()) if m else 0


def _ver(text: str | None) -> V | None:
    try:
        return V(str(text))
    except InvalidVersion:
        return None


def _src(facts: Iterable[Fact]) -> str:
    return "; ".join(dict.fromkeys(f.source for f in facts))


def _fmt(value: object) -> str:
    return "/".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _exp(line: str) -> F.Exporter:
    return F.TORCH_EXPORTER[line].value


# --- the context one target is checked in --------------------------------------
_PY = {"torch": F.TORCH_PYTHON, "onnx": F.ONNX_PYTHON, "onnxruntime": F.ORT_PYTHON}
_KNOWN = {"python": F.PYTHON_LINES, "torch": F.TORCH_LINES, "onnx": F.ONNX_LINES, "onnxruntime": F.ORT_LINES,
          "numpy": F.NUMPY_LINES, "protobuf": F.PROTOBUF_LINES, "onnxscript": F.ONNXSCRIPT_LINES}
_FOLLOWS = {"onnxscript": "torch", "numpy": "onnxruntime"}  # where render.py places unplaced packages
# pip sources that hold no (aarch64/Jetson) onnxruntime-gpu: PyPI, PyTorch's index, a .../pytorch/ wheel folder.
_NOT_ORT_SOURCE = re.compile(r"pypi\.org|pythonhosted|download\.pytorch\.org|/pytorch/?$")


class _Ctx:
    """One target, its candidate lines and derived facts; rules read it and `emit` findings."""

    def __init__(self, t: Target) -> None:
        self.t, self.host, self.out, self.rule = t, t.host, [], ""
        self.raw = {p: admitted(t.spec(p), _KNOWN[p]) for p in ("python", "torch", "onnx", "onnxruntime")}
        self.c = dict(self.raw)
        for pkg, table in _PY.items():
            kept = [l for l in self.raw[pkg] if any(_py_ok(p, table[l]) for p in self.raw["python"])]
            self.c[pkg] = kept or self.raw[pkg]  # nothing left: the python rules report it
        o = t.pip_options
        self.urls = ([o.index_url] if o.index_url else []) + list(o.extra_index_urls) + list(o.find_links)
        self.ort_sources = [u for u in self.urls if not _NOT_ORT_SOURCE.search(u)]
        self.gpu, self.want = t.onnxruntime_build == "gpu", _major(t.cuda)
        self.jetson = "jetpack" in self.host or "l4t" in self.host
        self.aarch64_only = all(p == "linux-aarch64" for p in t.platforms)
        self.jetson_torch = self.via_pip("torch") and any(h in u for u in self.urls for h in F.JETSON_WHEEL_HOSTS)
        self.variant = self._torch_variant()
        self.variant_cuda = int(self.variant[2:-1]) if self.variant and self.variant != "cpu" else 0
        self.jp = self._jetpack()
        self.implied = list(_implied(self))
        by_pkg = {i.package: i.spec for i in self.implied}
        self.numpy = t.numpy or by_pkg.get("numpy", ANY)
        self.onnxscript = t.onnxscript or by_pkg.get("onnxscript", ANY)
        self.ir = {e: self._ir(e) for e in t.exporters}  # the newest IR each exporter may write
        self.ir_min = {e: self._ir(e, oldest=True) for e in t.exporters}
        self.ir_max = max((f.value for f in self.ir.values() if f), default=0)
        self.cudnn = t.cudnn or self.host.get("cudnn")
        self.torch_cudnn = {F.TORCH_CUDNN[l].value for l in self.c["torch"]}
        self.torch_cudnn_text = _fmt(tuple(sorted(self.torch_cudnn)))
        self.trt = self.host.get("tensorrt") or (self.jp[1].value.tensorrt if self.jp else None)
        self.ort_cuda = self._ort_cuda()

    def emit(self, severity: str, message: str, source: str, remedy: str = "") -> None:
        self.out.append(Finding(self.t.name, severity, self.rule, message, source, remedy))

    def via_pip(self, pkg: str) -> bool:
        return pkg in self.t.pip or (pkg in _FOLLOWS and _FOLLOWS[pkg] in self.t.pip)

    def conda_forge(self, pkg: str) -> bool:
        return not self.via_pip(pkg) and any("conda-forge" in c for c in self.t.channels)

    def _torch_variant(self) -> str | None:
        """cuXXX/cpu of a pip torch: its local label, else PyTorch's index URL."""
        exact = self.t.torch.exact
        if not self.via_pip("torch") or self.jetson_torch:
            return None
        if exact is not None and re.fullmatch(r"cu\d+|cpu", exact.local or ""):
            return exact.local
        found = [m.group(1) for u in self.urls if (m := re.search(r"download\.pytorch\.org/whl/(cu\d+|cpu)\b", u))]
        return found[0] if found else None

    def _jetpack(self) -> tuple[str, Fact] | None:
        jp = self.host.get("jetpack", "")
        fact = F.JETPACK.get(".".join(jp.split(".")[:2]))
        if fact is not None and jp in F.JETPACK_UNCONFIRMED:
            fact = Fact(fact.value, f"{fact.source} (JetPack {jp}: UNCONFIRMED)", False)
        return (jp, fact) if fact else None

    def _ort_cuda(self) -> tuple[dict[str, Fact], str] | None:
        """The CUDA table for this target's onnxruntime-gpu, and where it comes from."""
        if not (self.gpu and self.want):
            return None
        if self.via_pip("onnxruntime") and not self.aarch64_only:  # aarch64: Jetson builds use the board's CUDA
            return F.ORT_GPU_CUDA, "onnxruntime-gpu (PyPI)"
        return (F.ORT_CONDA_FORGE_CUDA, "conda-forge onnxruntime") if self.conda_forge("onnxruntime") else None

    def _ir(self, exporter: str, oldest: bool = False) -> Fact | None:
        """The newest (oldest) IR this exporter writes over the torch candidates (TorchScript: follows the opset)."""
        if exporter == "torchscript":
            return F.TS_IR_BY_OPSET.get(self.t.opset)  # below opset 15: IR <= 8, which every known ORT loads
        made = [Fact(_exp(l).dynamo_ir, F.TORCH_EXPORTER[l].source) for l in self.c["torch"] if _exp(l).dynamo_ir]
        return (min if oldest else max)(made, key=lambda f: f.value, default=None)

    def per_line(self, pkg: str, lines: list[str], test: Callable[[str], Fact | None], every: str, some: str,
                 remedy: str, soft: bool = False, also: Iterable[Fact] = (), partial: bool = False) -> None:
        """Judge each candidate line of `pkg`; `test` returns the Fact that breaks it, or None.

        Messages are str.format templates over t (target), c (this context), spec (the target's
        spec of pkg), bad (broken lines), val (the newest broken line's fact value), bound (the
        safe pin, "" if none), pin ("; pin <bound>") and or_bound (" or <bound>"). `partial`: the other side of the
        pair admits safe versions, so even every line broken is only a warning.
        """
        broken = {l: f for l in lines if (f := test(l)) is not None}
        if not broken:
            return
        bad, good = list(broken), [l for l in lines if l not in broken]
        bound = _bound(pkg, bad, good) if good else ""
        kw = dict(t=self.t, c=self, spec=self.t.spec(pkg) if pkg in _KNOWN else "*", bad=_runs(bad, lines),
                  val=_fmt(broken[bad[-1]].value), bound=bound, pin=f"; pin {bound}" if bound else "",
                  or_bound=f" or {bound}" if bound else "")
        # The oldest and newest broken line's facts name the sources (one per line would be a wall).
        source = _src([broken[bad[0]], broken[bad[-1]], *also])
        unsure = [f for f in broken.values() if not f.confirmed]
        unconfirmed = bool(unsure)
        note = "" if not unsure else " (UNCONFIRMED, see source)" if len(unsure) == len(broken) else \
            " (partly UNCONFIRMED)"
        if good or partial:
            self.emit("warning", some.format(**kw) + note, source, remedy.format(**kw))
        else:
            hard = not soft and not unconfirmed
            self.emit("error" if hard else "warning", every.format(**kw) + note, source, remedy.format(**kw))


def _implied(c: _Ctx) -> Iterable[Implied]:
    t = c.t
    if "dynamo" in t.exporters:
        torch = c.c["torch"] or ([F.TORCH_LINES[-1]] if _newer(t.torch, F.TORCH_LINES) else [])
        needs = [l for l in torch if _exp(l).onnxscript_min]
        if needs:
            line = max(needs, key=lambda l: V(_exp(l).onnxscript_min))
            e = _exp(line)
            yield Implied("onnxscript", Spec.parse(f">={e.onnxscript_min}"),
                          f"torch {line}'s dynamo exporter imports onnxscript._framework_apis.{e.onnxscript_module} "
                          f"(first in onnxscript {e.onnxscript_min})", F.TORCH_EXPORTER[line].source)
    ort, torch = c.c["onnxruntime"], c.c["torch"]
    if ort and all(l in F.ORT_NUMPY1_ONLY for l in ort):
        yield Implied("numpy", Spec.parse("<2"), f"onnxruntime {_span(ort)} is built against numpy 1.x",
                      F.ORT_NUMPY1_ONLY[ort[0]].source)
    elif torch and all(_lt(l, F.TORCH_NUMPY2_FIRST.value) for l in torch):
        yield Implied("numpy", Spec.parse("<2"), f"torch {_span(torch)} is built against numpy 1.x",
                      F.TORCH_NUMPY2_FIRST.source)


# --- rules ---------------------------------------------------------------------
RULES: list[tuple[str, str, Callable[[_Ctx], None]]] = []  # (id, description, check)


def rule(rule_id: str):
    def register(fn: Callable[[_Ctx], None]) -> Callable[[_Ctx], None]:
        RULES.append((rule_id, (fn.__doc__ or "").strip(), fn))
        return fn
    return register


def _line_rule(rule_id: str, doc: str, pkg: str, test: Callable[[_Ctx, str], Fact | None], every: str, some: str,
               remedy: str, when: Callable[[_Ctx], bool] = lambda c: True,
               lines: Callable[[_Ctx], list[str]] | None = None,
               soft: Callable[[_Ctx], bool] = lambda c: False, also: Callable[[_Ctx], list[Fact]] = lambda c: [],
               partial: Callable[[_Ctx], bool] = lambda c: False) -> None:
    """Register a rule that judges each candidate line of `pkg` with `test` (see _Ctx.per_line)."""
    def check(c: _Ctx) -> None:
        if when(c):
            c.per_line(pkg, lines(c) if lines else c.c[pkg], lambda l: test(c, l), every, some, remedy,
                       soft(c), also(c), partial(c))
    RULES.append((rule_id, doc, check))


@rule("not-yet-known")
def _not_yet_known(c: _Ctx) -> None:
    """A spec admits no release the facts know (newer or older): reported once, not checked."""
    for pkg, lines in _KNOWN.items():
        spec = c.t.spec(pkg)
        if spec is None or admitted(spec, lines):
            continue
        named = _named(spec)
        where = ("newer than" if _newer(spec, lines) else
                 "older than" if named and all(v < V(f"{lines[0]}.0") for v in named) else "outside what")
        c.emit("warning", f"{pkg} {spec} is {where} envctl's rules know ({_span(lines)}); not checked",
               f"envctl facts.py: known {pkg} lines {_span(lines)} ({F.CF})",
               f"check {pkg} {spec} by hand, or update envctl's facts")
    if c.host.get("jetpack") and c.jp is None:
        c.emit("warning", f"JetPack {c.host['jetpack']} is not in envctl's facts; Jetson rules not checked",
               f"envctl facts.py JETPACK ({F.CF} §7)", "check the JetPack stack by hand")


def _python_rule(pkg: str) -> Callable[[_Ctx], None]:
    def check(c: _Ctx) -> None:
        py, lines, table = c.raw["python"], c.raw[pkg], _PY[pkg]
        if not py or not lines or any(_py_ok(p, table[l]) for l in lines for p in py):
            return
        ranges = ", ".join(f"{l}: {table[l].value[0]}–{table[l].value[1]}" for l in lines[-2:])
        pip = c.via_pip(pkg)
        c.emit("error" if pip else "warning", f"{pkg} {c.t.spec(pkg)} has no wheel for Python {c.t.python} "
               f"(Python {ranges})" + ("" if pip else "; PyPI's range, conda builds may differ"),
               _src(table[l] for l in lines), f"use a Python in {pkg}'s range, or another {pkg}")
    return check


for _pkg, _id in (("torch", "torch-python"), ("onnx", "onnx-python"), ("onnxruntime", "ort-python")):
    RULES.append((_id, f"{_pkg} has wheels only for some Pythons (PyPI cp tags).", _python_rule(_pkg)))


@rule("osx-no-cuda")
def _osx(c: _Ctx) -> None:
    """macOS builds of torch and onnxruntime have no CUDA."""
    if any(p.startswith("osx") for p in c.t.platforms) and (c.t.cuda or c.gpu):
        c.emit("error", "the target asks for CUDA or onnxruntime-gpu on macOS; macOS builds are CPU only",
               f"{F.CF} §6 (conda-forge: osx pytorch and onnxruntime are cpu builds)",
               "set cuda: none and onnxruntime_build: cpu for macOS")


_VARIANTS = F.TORCH_VARIANTS
_line_rule("torch-cuda-variant", "The CUDA build of torch a target asks for must exist for that release.", "torch",
           lambda c, l: None if c.variant in _VARIANTS[l].value else _VARIANTS[l],
           "torch {spec} has no {c.variant} build (it has {val})",
           "torch {spec} admits {bad}, which have no {c.variant} build{pin}",
           "pick a download.pytorch.org index that torch {spec} is built for",
           when=lambda c: c.variant_cuda > 0, lines=lambda c: [l for l in c.c["torch"] if l in _VARIANTS])
_line_rule("torch-cuda-variant", "torch's CUDA build must have the target's CUDA major.", "torch",
           lambda c, l: _VARIANTS[l] if c.variant_cuda != c.want else None,
           "torch's {c.variant} build is CUDA {c.variant_cuda}, but the target's cuda is {t.cuda}",
           "torch's {c.variant} build does not match the target's cuda {t.cuda}",
           "use the download.pytorch.org index for CUDA {c.want}, or change cuda",
           when=lambda c: c.variant_cuda > 0 and c.want > 0,
           lines=lambda c: [l for l in c.c["torch"] if l in _VARIANTS])
_line_rule("torch-cuda-variant", "PyPI's default linux torch wheel is one CUDA build (12.x from 2.1, 13.x from 2.11).",
           "torch", lambda c, l: F.TORCH_PYPI_CUDA[l] if _major(F.TORCH_PYPI_CUDA[l].value) != c.want else None,
           "torch {spec} from PyPI is a CUDA {val} build; the target's cuda is {t.cuda}",
           "torch {spec} admits {bad}, whose PyPI wheels are not CUDA {c.want}{pin}",
           "take torch from download.pytorch.org/whl/cu{c.want}x (pip_options.index_url)",
           when=lambda c: c.want > 0 and c.via_pip("torch") and c.variant is None and not c.jetson_torch
           and "linux-64" in c.t.platforms)
_line_rule("torch-cuda-variant", "conda-forge builds pytorch for some CUDA majors only.", "torch",
           lambda c, l: None if c.want in F.TORCH_CONDA_FORGE_CUDA[l].value else F.TORCH_CONDA_FORGE_CUDA[l],
           "conda-forge has no CUDA {c.want} build of pytorch {spec} (CUDA majors {val})",
           "pytorch {spec} admits {bad}, which conda-forge builds without CUDA {c.want}{pin}",
           "take torch from download.pytorch.org through pip, or change cuda",
           when=lambda c: c.want > 0 and c.conda_forge("torch") and not all(p.startswith("osx") for p in c.t.platforms),
           lines=lambda c: [l for l in c.c["torch"] if l in F.TORCH_CONDA_FORGE_CUDA])
_line_rule("torch-conda-channel", "The `pytorch` Anaconda channel stopped at torch 2.5.", "torch",
           lambda c, l: F.PYTORCH_CHANNEL_LAST if _lt(F.PYTORCH_CHANNEL_LAST.value, l) else None,
           "torch {spec} is not on the pytorch channel (its last release is {val})",
           "torch {spec} admits {bad}, newer than the pytorch channel's last release{pin}",
           "use conda-forge, or torch wheels through pip",
           when=lambda c: not c.via_pip("torch") and any(ch.rstrip("/").split("/")[-1] == "pytorch"
                                                         for ch in c.t.channels))
_line_rule("dynamo-availability", "torch.onnx.export(dynamo=True) exists from torch 2.5 (2.1-2.4: beta dynamo_export).",
           "torch", lambda c, l: None if _exp(l).dynamo == "export" else F.TORCH_EXPORTER[l],
           "torch {spec} has no torch.onnx.export(dynamo=True) (2.1–2.4 have only the beta dynamo_export)",
           "torch {spec} admits {bad}, which have no torch.onnx.export(dynamo=True){pin}",
           "use torch>=2.5, or drop the dynamo exporter", when=lambda c: "dynamo" in c.t.exporters)
# Above the TorchScript cap torch 1.13/2.0 raise ValueError and >= 2.1 only warn.
_line_rule("torch-exporter-opset", "The opset must be within the TorchScript exporter's cap (17 in 2.1-2.3, 20 later).",
           "torch", lambda c, l: Fact(_exp(l).ts_max, F.TORCH_EXPORTER[l].source) if c.t.opset > _exp(l).ts_max
           else None,
           "opset {t.opset} is above torch {spec}'s TorchScript exporter maximum ({val})",
           "torch {spec} admits {bad}, whose TorchScript exporter supports opset <= {val}{pin}",
           "lower the opset, or use the dynamo exporter for opsets above the TorchScript cap",
           when=lambda c: "torchscript" in c.t.exporters,
           soft=lambda c: not all(_exp(l).ts_over_cap_raises for l in c.c["torch"]),
           also=lambda c: [] if all(_exp(l).ts_over_cap_raises for l in c.c["torch"]) else [Fact(0, F.TS_CAP_SOURCE)])
_line_rule("torch-exporter-opset", "The opset must be at most torch's ONNX_MAX_OPSET for the dynamo exporter.", "torch",
           lambda c, l: Fact(_exp(l).max_opset, F.TORCH_EXPORTER[l].source) if c.t.opset > _exp(l).max_opset else None,
           "opset {t.opset} is above torch {spec}'s ONNX_MAX_OPSET ({val}) for the dynamo exporter; behaviour "
           "unverified",
           "torch {spec} admits {bad}, whose dynamo exporter supports opset <= {val}{pin}",
           "lower the opset, or use a newer torch", when=lambda c: "dynamo" in c.t.exporters, soft=lambda c: True,
           lines=lambda c: [l for l in c.c["torch"] if _exp(l).dynamo == "export"])


@rule("dynamo-opset-floor")
def _dynamo_floor(c: _Ctx) -> None:
    """torch >= 2.9's dynamo exporter builds at opset 18 and version-converts lower requests."""
    lines = [l for l in c.c["torch"] if _exp(l).dynamo_build_opset] if "dynamo" in c.t.exporters else []
    floor = min((_exp(l).dynamo_build_opset for l in lines), default=0)
    if lines and c.t.opset < floor:
        old = [l for l in c.c["onnxruntime"] if F.ORT_MAX_OPSET[l].value < floor]
        c.emit("warning", f"torch {_span(lines)}'s dynamo exporter builds at opset {floor} and converts down to "
               f"{c.t.opset}; if that fails the model stays at {floor}"
               + (f", which onnxruntime {_span(old)} cannot load" if old else ""),
               F.TORCH_EXPORTER[lines[-1]].source, f"export at opset>={floor} with dynamo, or check the exported opset")


_line_rule("ort-max-opset", "onnxruntime loads models only up to the last released opset of the onnx it bundles.",
           "onnxruntime", lambda c, l: F.ORT_MAX_OPSET[l] if F.ORT_MAX_OPSET[l].value < c.t.opset else None,
           "opset {t.opset} is above what onnxruntime {spec} loads (max opset {val})",
           "onnxruntime {spec} admits {bad}, which cannot load opset {t.opset}{pin}",
           "lower the opset, or use an onnxruntime that loads opset {t.opset}")


def _ort_ir(exporter: str) -> Callable[[_Ctx, str], Fact | None]:
    def test(c: _Ctx, o: str) -> Fact | None:
        ir, disputed = c.ir[exporter].value, F.ORT_MAX_IR_DISPUTED.get(o)
        if F.ORT_MAX_IR[o].value < ir:
            return F.ORT_MAX_IR[o]
        return disputed if disputed and disputed.value < ir else None  # docs lower than measured: warn only
    return test


for _e in ("torchscript", "dynamo"):
    _line_rule("ort-max-ir", f"The IR the {_e} exporter writes must be one the onnxruntime release loads.",
               "onnxruntime", _ort_ir(_e),
               f"the {_e} exporter writes IR {{c.ir[{_e}].value}}; onnxruntime {{spec}} loads IR <= {{val}}",
               f"onnxruntime {{spec}} admits {{bad}}, which cannot load the IR {{c.ir[{_e}].value}} the {_e} exporter "
               "writes{pin}",
               "use an onnxruntime that loads that IR, or a lower opset (TorchScript's IR follows the opset)",
               when=lambda c, e=_e: c.ir.get(e) is not None, also=lambda c, e=_e: [c.ir[e]],
               # an older torch candidate writes an IR some ORT candidate loads: not every pair breaks
               partial=lambda c, e=_e: any(F.ORT_MAX_IR[o].value >= c.ir_min[e].value for o in c.c["onnxruntime"]))
_line_rule("onnx-max-opset", "The onnx package knows opsets up to its last released one (checker, converter).",
           "onnx", lambda c, l: F.ONNX_MAX_OPSET[l] if F.ONNX_MAX_OPSET[l].value < c.t.opset else None,
           "onnx {spec} knows opsets up to {val}; its checker and version converter do not know opset {t.opset}",
           "onnx {spec} admits {bad}, which do not know opset {t.opset}{pin}",
           "use an onnx that knows opset {t.opset}", soft=lambda c: True)


_line_rule("onnx-max-ir", "onnx.checker rejects models whose IR is newer than the onnx package's IR_VERSION.", "onnx",
           lambda c, l: F.ONNX_IR[l] if F.ONNX_IR[l].value < c.ir_max else None,
           "exports write IR {c.ir_max}, but onnx {spec} has IR_VERSION {val}: onnx.checker rejects them",
           "onnx {spec} admits {bad}, whose checker rejects newer IRs than {val}{pin}",
           "use an onnx whose IR_VERSION is at least the exported IR", soft=lambda c: True,
           when=lambda c: c.ir_max > 0, also=lambda c: [Fact(0, F.ONNX_CHECKER_IR)])
for _pkg, _table, _doc in (("onnx", F.ONNX_PROTOBUF, "Each onnx release requires a protobuf range (>=4.25.1 from 1.18, "
                            ">=6.31.1 from 1.23)."), ("onnxruntime", F.ORT_PROTOBUF, "onnxruntime >= 1.27 requires "
                                                      "protobuf>=4.25.8.")):
    _line_rule(f"{'ort' if _pkg == 'onnxruntime' else _pkg}-protobuf-floor", _doc, _pkg,
               lambda c, l, tb=_table: None if _overlap(c.t.protobuf, tb[l].value, F.PROTOBUF_LINES) else tb[l],
               f"protobuf {{t.protobuf}} is outside what {_pkg} {{spec}} requires (protobuf{{val}})",
               f"{_pkg} {{spec}} admits {{bad}}, which need protobuf{{val}}{{pin}} (or widen protobuf)",
               "set protobuf within '{val}'", lines=lambda c, p=_pkg, tb=_table: [l for l in c.c[p] if l in tb],
               # PyPI metadata: conda-forge's onnx follows its libprotobuf pin instead (unless the floor is a
               # measured import failure), its onnxruntime declares protobuf unpinned
               soft=lambda c, p=_pkg: not c.via_pip(p) and not any(
                   not _overlap(c.t.protobuf, F.ONNX_PROTOBUF[l].value, F.PROTOBUF_LINES)
                   for l in c.c["onnx"] if l in F.ONNX_PROTOBUF_RUNTIME),
               when=lambda c, p=_pkg: p == "onnx" or c.via_pip(p))
_CF_PB = F.ONNX_CONDA_FORGE_PROTOBUF
_line_rule("conda-onnx-protobuf", "conda-forge's onnx links one libprotobuf; protobuf must admit the matching version.",
           "onnx", lambda c, l: None if any(c.t.protobuf.contains(p) for pl in _CF_PB[l].value
                                            for p in _probes(pl, c.t.protobuf)) else _CF_PB[l],
           "conda-forge builds onnx {spec} against protobuf {val}; protobuf {t.protobuf} excludes it",
           "onnx {spec} admits {bad}, which conda-forge builds against a protobuf {t.protobuf} excludes",
           "widen protobuf to admit conda-forge's build of onnx", when=lambda c: c.conda_forge("onnx"),
           lines=lambda c: [l for l in c.c["onnx"] if l in _CF_PB])


def _cuda_majors(fact: Fact) -> tuple[int, ...]:
    return fact.value if isinstance(fact.value, tuple) else (fact.value,)


_line_rule("ort-gpu-cuda-major", "onnxruntime-gpu is built for one CUDA major (PyPI: 11 to 1.18, 12 from 1.19, 13 from "
           "1.27).", "onnxruntime", lambda c, l: None if c.want in _cuda_majors(c.ort_cuda[0][l]) else c.ort_cuda[0][l],
           "{c.ort_cuda[1]} {spec} is built for CUDA {val}; the target's cuda is {t.cuda}",
           "{c.ort_cuda[1]} {spec} admits {bad}, not built for CUDA {c.want}{pin}",
           f"pick an onnxruntime-gpu built for CUDA {{c.want}} ({F.CF} §3)",
           when=lambda c: c.ort_cuda is not None,
           lines=lambda c: [l for l in c.c["onnxruntime"] if l in c.ort_cuda[0]], soft=lambda c: bool(c.ort_sources))


def _torch_cudnn(c: _Ctx) -> bool:
    return c.want > 0 and c.variant != "cpu"


def _ort_cudnn(c: _Ctx) -> bool:  # PyPI's table; aarch64 (Jetson) builds link the board's cuDNN
    return c.gpu and c.via_pip("onnxruntime") and not c.aarch64_only


_line_rule("cudnn-major-mix", "torch and onnxruntime-gpu in one process need one cuDNN major (9 from 2.4 / 1.19).",
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
    _line_rule("cudnn-major-declared", f"The cuDNN major the target or host declares must be {_pkg}'s.", _pkg,
               lambda c, l, tb=_table: tb[l] if tb[l].value != _major(c.cudnn) else None,
               f"{_pkg} {{spec}} uses cuDNN {{val}}, but the target declares cuDNN {{c.cudnn}}",
               f"{_pkg} {{spec}} admits {{bad}}, which use another cuDNN than {{c.cudnn}}{{pin}}",
               f"match the cuDNN major ({F.CF} §3/§4)", soft=lambda c: c.jetson,
               when=lambda c, ok=_applies: _major(c.cudnn) > 0 and ok(c),
               lines=lambda c, p=_pkg, tb=_table: [l for l in c.c[p] if l in tb])


def _numpy_lines(c: _Ctx) -> list[str]:
    extra = tuple(sorted({_line(v) for v in _named(c.numpy)} - set(F.NUMPY_LINES), key=V))
    return admitted(c.numpy, F.NUMPY_LINES + extra)


_NUMPY1 = "cannot import (built against numpy 1.x)"
for _id, _pkg, _old, _fault, _doc in (
        ("numpy2-ort", "onnxruntime", F.ORT_NUMPY1_ONLY.get, _NUMPY1,
         "onnxruntime <= 1.18 cannot import with numpy 2 (<= 1.17 do not even pin numpy<2)."),
        ("numpy2-torch", "torch", lambda l: F.TORCH_NUMPY2_FIRST if _lt(l, F.TORCH_NUMPY2_FIRST.value) else None,
         _NUMPY1, "torch <= 2.2 is built against numpy 1.x."),
        ("numpy2-onnx", "onnx", lambda l: F.ONNX_NUMPY2_FIRST if _lt(l, F.ONNX_NUMPY2_FIRST.value) else None,
         "do not officially support (basic import worked in tests)",
         "onnx supports numpy 2 officially from 1.17 (older ones imported fine in tests).")):
    _line_rule(_id, _doc, _pkg, lambda c, l, old=_old: old(l),
               f"numpy {{c.numpy}} admits only numpy 2, which {_pkg} {{spec}} {_fault}",
               f"numpy {{c.numpy}} admits numpy 2, which {_pkg} {{bad}} {_fault}; pin numpy<2{{or_bound}}",
               f"pin numpy<2, or use a release of {_pkg} built for numpy 2",
               when=lambda c: any(_major(n) >= 2 for n in _numpy_lines(c)),
               partial=lambda c: any(_major(n) < 2 for n in _numpy_lines(c)))


@rule("onnxscript-min")
def _onnxscript_min(c: _Ctx) -> None:
    """The dynamo exporter imports a torch-version-specific onnxscript module: a minimum onnxscript per torch."""
    if "dynamo" not in c.t.exporters or c.t.onnxscript is None:
        return  # unset: rendering adds the implied minimum
    mins = {l: _exp(l).onnxscript_min for l in c.c["torch"] if _exp(l).onnxscript_min}
    never = [l for l in mins if not _overlap(c.t.onnxscript, f">={mins[l]}", F.ONNXSCRIPT_LINES)]
    below = [l for l in mins if _overlap(c.t.onnxscript, f"<{mins[l]}", F.ONNXSCRIPT_LINES)]
    impossible = bool(mins) and len(never) == len(mins)
    need = max(mins.values(), key=V, default="")
    c.per_line("torch", list(mins), lambda l: F.TORCH_EXPORTER[l] if l in (never if impossible else below) else None,
               f"onnxscript {c.t.onnxscript} is older than torch {{spec}}'s dynamo exporter needs (onnxscript>={need})",
               f"onnxscript {c.t.onnxscript} admits releases older than torch {{bad}}'s dynamo exporter needs; pin "
               f"onnxscript>={need}",
               f"set onnxscript to '>={need}'", partial=not impossible)


def _onnxscript_needs(c: _Ctx) -> Fact:
    return min((F.ONNXSCRIPT_ONNX_MIN[s] for s in admitted(c.onnxscript, F.ONNXSCRIPT_LINES)), key=lambda f: V(f.value))


_line_rule("onnxscript-onnx", "onnxscript (for the dynamo exporter) requires onnx>=1.16, >=1.17 from onnxscript 0.6.",
           "onnx", lambda c, l: _onnxscript_needs(c) if _lt(l, _onnxscript_needs(c).value) else None,
           "onnxscript {c.onnxscript} requires onnx>={val}; onnx {spec} is older",
           "onnx {spec} admits {bad}, older than onnxscript {c.onnxscript} requires{pin}", "use onnx>={val}",
           when=lambda c: "dynamo" in c.t.exporters and bool(admitted(c.onnxscript, F.ONNXSCRIPT_LINES)))


@rule("jetson-ort-gpu-wheels")
def _jetson_ort(c: _Ctx) -> None:
    """PyPI has no aarch64 onnxruntime-gpu: a linux-aarch64 GPU target needs a Jetson wheel index or find-links."""
    if c.gpu and c.via_pip("onnxruntime") and "linux-aarch64" in c.t.platforms and not c.ort_sources:
        c.emit("error", "onnxruntime-gpu for linux-aarch64 would come from PyPI, which has no aarch64 onnxruntime-gpu",
               F.ORT_GPU_AARCH64_PYPI.source,
               "add a Jetson wheel index or find_links to pip_options (e.g. https://pypi.jetson-ai-lab.dev/jp6/cu126)")


_line_rule("jetson-tensorrt", "onnxruntime's TensorRT EP links TensorRT 8 up to 1.17 and TensorRT 10 from 1.18.",
           "onnxruntime", lambda c, l: F.ORT_TENSORRT[l] if F.ORT_TENSORRT[l].value != _major(c.trt) else None,
           "onnxruntime {spec}'s TensorRT EP needs TensorRT {val}; the host has TensorRT {c.trt}",
           "onnxruntime {spec} admits {bad}, whose TensorRT EP cannot use TensorRT {c.trt}{pin}",
           "TensorRT 8: onnxruntime<=1.17; TensorRT 10: onnxruntime>=1.18 (the CUDA EP is unaffected)",
           when=lambda c: c.gpu and _major(c.trt) > 0,
           soft=lambda c: c.t.execution_provider != "TensorrtExecutionProvider")


@rule("jetpack-cuda")
def _jetpack_cuda(c: _Ctx) -> None:
    """JetPack fixes the board's CUDA (JetPack >= 5 can upgrade to CUDA >= 11.8); host and target CUDA must agree."""
    host_cuda = c.host.get("cuda")
    if _major(host_cuda) and c.want and _major(host_cuda) != c.want:
        c.emit("error", f"the host provides CUDA {host_cuda} but the target's cuda is {c.t.cuda}",
               "matrix host_provides.cuda (what the machine supplies)", "make cuda and host_provides.cuda agree")
    cuda = host_cuda or c.t.cuda
    if c.jp and cuda:
        (version, fact), (min_jp, min_cuda) = c.jp, F.JETSON_CUDA_UPGRADE.value
        default = fact.value.cuda
        have = _ver(cuda)
        upgrade = have is not None and _major(version) >= int(min_jp) and have >= max(V(min_cuda), V(default))
        if (have is None or have.release[:2] != V(default).release[:2]) and not upgrade:
            c.emit("warning", f"JetPack {version} ships CUDA {default}; CUDA {cuda} is neither that nor a supported "
                   "upgrade", _src([fact, F.JETSON_CUDA_UPGRADE]), f"use CUDA {default}, or >={min_cuda} on JetPack 5+")


@rule("jetpack-python")
def _jetpack_python(c: _Ctx) -> None:
    """NVIDIA's Jetson torch wheels are built for the JetPack's default Python only."""
    if c.jp and c.jetson_torch and not c.t.python.contains(f"{c.jp[1].value.python}.0"):
        (version, fact), nvidia = c.jp, any("developer.download.nvidia.com" in u for u in c.urls)
        c.emit("error" if nvidia and fact.confirmed else "warning", f"NVIDIA's torch wheels for JetPack {version} are "
               f"built for Python {fact.value.python}; the target's python is {c.t.python}", fact.source,
               f"set python to '{fact.value.python}'")


@rule("jetpack-stack")
def _jetpack_stack(c: _Ctx) -> None:
    """host_provides l4t/cudnn/tensorrt should be what that JetPack ships."""
    if not c.jp:
        return
    (version, fact), l4t, have = c.jp, F.JETPACK_L4T.get(c.jp[0]), c.host.get("l4t")
    if l4t and have and not (have.upper().lstrip("R") + ".").startswith(l4t.value.lstrip("R") + "."):
        c.emit("warning", f"JetPack {version} is L4T {l4t.value}, but host_provides says l4t {have}", l4t.source,
               "correct host_provides.jetpack or host_provides.l4t")
    for key in ("cudnn", "tensorrt"):
        want, have = getattr(fact.value, key), c.host.get(key)
        if want and have and (_ver(have) is None or _ver(have).release[:2] != V(want).release[:2]):
            c.emit("warning", f"JetPack {version} ships {key} {want}, but host_provides says {have}", fact.source,
                   f"check host_provides.{key} against the board")


@rule("onnx-opset27-trap")
def _opset27(c: _Ctx) -> None:
    """onnx 1.22's helper.make_model stamps the unreleased opset 27, which onnxruntime <= 1.31 rejects."""
    old = [l for l in c.c["onnxruntime"] if F.ORT_MAX_OPSET[l].value < 27] if "1.22" in c.c["onnx"] else []
    if old:
        c.emit("warning", f"onnx 1.22's helper.make_model stamps opset 27 by default, which onnxruntime {_span(old)} "
               "rejects ('Opset 27 is under development')",
               f"{F.ONNX_MAX_OPSET['1.22'].source}; https://github.com/microsoft/onnxruntime/pull/28754; {F.CF} §0.2",
               "pass opset_imports=[onnx.helper.make_opsetid('', 26)] to make_model, or use onnx>=1.23 with "
               "onnxruntime>=1.32")


# --- public API ----------------------------------------------------------------
def describe_rules() -> list[tuple[str, str]]:
    """(rule id, one-line description) in check order; an id may have several entries (one per case)."""
    return [(rule_id, doc) for rule_id, doc, _ in RULES]


def check_target(target: Target) -> list[Finding]:
    c = _Ctx(target)
    for rule_id, _, check in RULES:
        c.rule = rule_id
        check(c)
    return c.out


def check_matrix(matrix: Matrix) -> dict[str, list[Finding]]:
    return {name: check_target(t) for name, t in matrix.targets.items()}


def implied_requirements(target: Target) -> list[Implied]:
    return _Ctx(target).implied
