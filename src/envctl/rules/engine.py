"""The rule engine: candidate release lines, the per-target context, the registry.

Semantics are described in api.py, the public face of the rules.
"""


from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from envctl.rules import facts
from envctl.rules.facts import Fact
from envctl.matrix.loader import Target
from envctl.matrix.versions import ANY, Spec


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
def line_of(v: Version) -> str:
    rel = v.release + (0,)
    return f"{rel[0]}.{rel[1]}"


def named_versions(spec: Spec | str) -> list[Version]:
    """The versions a spec's clauses name."""
    try:
        clauses = SpecifierSet(spec.pip() if isinstance(spec, Spec) else spec)
    except InvalidSpecifier:
        return []
    out = []
    for clause in clauses:
        try:
            out.append(Version(clause.version.removesuffix(".*")))
        except InvalidVersion:
            pass
    return out


def _has(spec: Spec | str, v: Version) -> bool:
    return spec.contains(v) if isinstance(spec, Spec) else SpecifierSet(spec).contains(v, prereleases=True)


def probes(line: str, *specs: Spec | str) -> list[Version]:
    out = [Version(f"{line}.0"), Version(f"{line}.9999")]
    for v in (v for s in specs for v in named_versions(s) if line_of(v) == line):
        rel = (v.release + (0, 0, 0))[:3]
        out += [v, Version(f"{rel[0]}.{rel[1]}.{rel[2] + 1}")]  # a bound and just past it
    return out


def admitted(spec: Spec, lines: Iterable[str]) -> list[str]:
    """The known release lines `spec` admits."""
    return [line for line in lines if any(spec.contains(p) for p in probes(line, spec))]


def overlap(a: Spec | str, b: str, lines: Iterable[str]) -> bool:
    """Whether some version satisfies both specs (probed per line)."""
    every = list(lines) + sorted({line_of(v) for s in (a, b) for v in named_versions(s)})
    return any(_has(a, p) and _has(b, p) for line in every for p in probes(line, a, b))


def lt(a: str, b: str) -> bool:
    return Version(a) < Version(b)


def span(lines: Iterable[str]) -> str:
    ls = sorted(set(lines), key=Version)
    return ls[0] if len(ls) == 1 else f"{ls[0]}–{ls[-1]}"


def _runs(sub: Iterable[str], lines: list[str]) -> str:
    """`sub` as runs of consecutive `lines`: "1.13, 2.8–2.14"."""
    sub, runs, run = set(sub), [], []
    for line in lines + [""]:
        if line in sub:
            run.append(line)
        elif run:
            runs.append(span(run))
            run = []
    return ", ".join(runs)


def _bound(pkg: str, bad: list[str], good: list[str]) -> str:
    if lt(bad[-1], good[0]):
        return f"{pkg}>={good[0]}"
    return f"{pkg}<{bad[0]}" if lt(good[-1], bad[0]) else f"{pkg} {span(good)}"


def newer_than(spec: Spec, lines: tuple[str, ...]) -> bool:
    named = named_versions(spec)
    return bool(named) and all(v > Version(f"{lines[-1]}.9999") for v in named)


def py_ok(py: str, fact: Fact) -> bool:
    return Version(fact.value[0]) <= Version(py) <= Version(fact.value[1])


def major_of(text: str | None) -> int:
    """Leading integer of a version-ish string (host_provides values are free text); 0 if none."""
    m = re.match(r"\d+", str(text or ""))
    return int(m.group()) if m else 0


def ver(text: str | None) -> Version | None:
    try:
        return Version(str(text))
    except InvalidVersion:
        return None


def src(cited: Iterable[Fact]) -> str:
    return "; ".join(dict.fromkeys(f.source for f in cited))


def _fmt(value: object) -> str:
    return "/".join(map(str, value)) if isinstance(value, tuple) else str(value)


def exp(line: str) -> facts.Exporter:
    return facts.TORCH_EXPORTER[line].value


# --- the context one target is checked in --------------------------------------
PY = {"torch": facts.TORCH_PYTHON, "onnx": facts.ONNX_PYTHON, "onnxruntime": facts.ORT_PYTHON}
KNOWN = {"python": facts.PYTHON_LINES, "torch": facts.TORCH_LINES, "onnx": facts.ONNX_LINES, "onnxruntime": facts.ORT_LINES,
          "numpy": facts.NUMPY_LINES, "protobuf": facts.PROTOBUF_LINES, "onnxscript": facts.ONNXSCRIPT_LINES}
_FOLLOWS = {"onnxscript": "torch", "numpy": "onnxruntime"}  # where render.py places unplaced packages
# pip sources that hold no (aarch64/Jetson) onnxruntime-gpu: PyPI, PyTorch's index, a .../pytorch/ wheel folder.
_NOT_ORT_SOURCE = re.compile(r"pypi\.org|pythonhosted|download\.pytorch\.org|/pytorch/?$")


class RuleContext:
    """One target, its candidate lines and derived facts; rules read it and `emit` findings."""

    def __init__(self, target: Target) -> None:
        self.target, self.host, self.rule = target, target.host, ""
        self.out: list[Finding] = []
        required = {"python": target.python, "torch": target.torch, "onnx": target.onnx, "onnxruntime": target.onnxruntime}
        self.raw = {p: admitted(spec, KNOWN[p]) for p, spec in required.items()}
        self.candidates = dict(self.raw)
        for pkg, table in PY.items():
            kept = [line for line in self.raw[pkg] if any(py_ok(p, table[line]) for p in self.raw["python"])]
            self.candidates[pkg] = kept or self.raw[pkg]  # nothing left: the python rules report it
        o = target.pip_options
        self.urls = ([o.index_url] if o.index_url else []) + list(o.extra_index_urls) + list(o.find_links)
        self.ort_sources = [u for u in self.urls if not _NOT_ORT_SOURCE.search(u)]
        self.gpu, self.want = target.onnxruntime_build == "gpu", major_of(target.cuda)
        self.jetson = "jetpack" in self.host or "l4t" in self.host
        self.aarch64_only = all(p == "linux-aarch64" for p in target.platforms)
        self.jetson_torch = self.via_pip("torch") and any(h in u for u in self.urls for h in facts.JETSON_WHEEL_HOSTS)
        self.variant = self._torch_variant()
        self.variant_cuda = int(self.variant[2:-1]) if self.variant and self.variant != "cpu" else 0
        self.jetpack = self._jetpack()
        self.implied = list(_implied(self))
        by_pkg = {i.package: i.spec for i in self.implied}
        self.numpy = target.numpy or by_pkg.get("numpy", ANY)
        self.onnxscript = target.onnxscript or by_pkg.get("onnxscript", ANY)
        self.ir = {e: self._ir(e) for e in target.exporters}  # the newest IR each exporter may write
        self.ir_min = {e: self._ir(e, oldest=True) for e in target.exporters}
        self.ir_max = max((f.value for f in self.ir.values() if f), default=0)
        self.cudnn = target.cudnn or self.host.get("cudnn")
        self.torch_cudnn = {facts.TORCH_CUDNN[line].value for line in self.candidates["torch"]}
        self.torch_cudnn_text = _fmt(tuple(sorted(self.torch_cudnn)))
        self.trt = self.host.get("tensorrt") or (self.jetpack[1].value.tensorrt if self.jetpack else None)
        self.ort_cuda = self._ort_cuda()

    def emit(self, severity: str, message: str, source: str, remedy: str = "") -> None:
        self.out.append(Finding(self.target.name, severity, self.rule, message, source, remedy))

    def via_pip(self, pkg: str) -> bool:
        return pkg in self.target.pip or (pkg in _FOLLOWS and _FOLLOWS[pkg] in self.target.pip)

    def conda_forge(self, pkg: str) -> bool:
        return not self.via_pip(pkg) and any("conda-forge" in ctx for ctx in self.target.channels)

    def _torch_variant(self) -> str | None:
        """cuXXX/cpu of a pip torch: its local label, else PyTorch's index URL."""
        exact = self.target.torch.exact
        if not self.via_pip("torch") or self.jetson_torch:
            return None
        if exact is not None and re.fullmatch(r"cu\d+|cpu", exact.local or ""):
            return exact.local
        found = [m.group(1) for u in self.urls if (m := re.search(r"download\.pytorch\.org/whl/(cu\d+|cpu)\b", u))]
        return found[0] if found else None

    def _jetpack(self) -> tuple[str, Fact] | None:
        jetpack = self.host.get("jetpack", "")
        fact = facts.JETPACK.get(".".join(jetpack.split(".")[:2]))
        if fact is not None and jetpack in facts.JETPACK_UNCONFIRMED:
            fact = Fact(fact.value, f"{fact.source} (JetPack {jetpack}: UNCONFIRMED)", False)
        return (jetpack, fact) if fact else None

    def ir_fact(self, exporter: str, oldest: bool = False) -> Fact:
        """The newest (oldest) IR `exporter` writes, for rules that run only `when` it is known."""
        fact = (self.ir_min if oldest else self.ir).get(exporter)
        if fact is None:
            raise LookupError(f"no IR is known for the {exporter} exporter: the rule's `when` should have said so")
        return fact

    def ort_cuda_table(self) -> dict[str, Fact]:
        """The onnxruntime-gpu CUDA table, for rules that run only `when` there is one."""
        if self.ort_cuda is None:
            raise LookupError("no onnxruntime-gpu CUDA table applies: the rule's `when` should have said so")
        return self.ort_cuda[0]

    def _ort_cuda(self) -> tuple[dict[str, Fact], str] | None:
        """The CUDA table for this target's onnxruntime-gpu, and where it comes from."""
        if not (self.gpu and self.want):
            return None
        if self.via_pip("onnxruntime") and not self.aarch64_only:  # aarch64: Jetson builds use the board's CUDA
            return facts.ORT_GPU_CUDA, "onnxruntime-gpu (PyPI)"
        return (facts.ORT_CONDA_FORGE_CUDA, "conda-forge onnxruntime") if self.conda_forge("onnxruntime") else None

    def _ir(self, exporter: str, oldest: bool = False) -> Fact | None:
        """The newest (oldest) IR this exporter writes over the torch candidates (TorchScript: follows the opset)."""
        if exporter == "torchscript":
            return facts.TS_IR_BY_OPSET.get(self.target.opset)  # below opset 15: IR <= 8, which every known ORT loads
        made = [Fact(exp(line).dynamo_ir, facts.TORCH_EXPORTER[line].source) for line in self.candidates["torch"] if exp(line).dynamo_ir]
        return (min if oldest else max)(made, key=lambda f: f.value, default=None)

    def per_line(self, pkg: str, lines: list[str], test: Callable[[str], Fact | None], every: str, some: str,
                 remedy: str, soft: bool = False, also: Iterable[Fact] = (), partial: bool = False) -> None:
        """Judge each candidate line of `pkg`; `test` returns the Fact that breaks it, or None.

        Messages are str.format templates over target, ctx (this context), spec (the target's
        spec of pkg), bad (broken lines), val (the newest broken line's fact value), bound (the
        safe pin, "" if none), pin ("; pin <bound>") and or_bound (" or <bound>"). `partial`: the other side of the
        pair admits safe versions, so even every line broken is only a warning.
        """
        broken = {line: f for line in lines if (f := test(line)) is not None}
        if not broken:
            return
        bad, good = list(broken), [line for line in lines if line not in broken]
        bound = _bound(pkg, bad, good) if good else ""
        kw = dict(target=self.target, ctx=self, spec=self.target.spec(pkg) if pkg in KNOWN else "*", bad=_runs(bad, lines),
                  val=_fmt(broken[bad[-1]].value), bound=bound, pin=f"; pin {bound}" if bound else "",
                  or_bound=f" or {bound}" if bound else "")
        # The oldest and newest broken line's facts name the sources (one per line would be a wall).
        source = src([broken[bad[0]], broken[bad[-1]], *also])
        unsure = [f for f in broken.values() if not f.confirmed]
        unconfirmed = bool(unsure)
        note = "" if not unsure else " (UNCONFIRMED, see source)" if len(unsure) == len(broken) else \
            " (partly UNCONFIRMED)"
        if good or partial:
            self.emit("warning", some.format(**kw) + note, source, remedy.format(**kw))
        else:
            hard = not soft and not unconfirmed
            self.emit("error" if hard else "warning", every.format(**kw) + note, source, remedy.format(**kw))


def _implied(ctx: RuleContext) -> Iterable[Implied]:
    target = ctx.target
    if "dynamo" in target.exporters:
        torch = ctx.candidates["torch"] or ([facts.TORCH_LINES[-1]] if newer_than(target.torch, facts.TORCH_LINES) else [])
        needs = {line: least for line in torch if (least := exp(line).onnxscript_min)}
        if needs:
            line = max(needs, key=lambda line: Version(needs[line]))
            e = exp(line)
            yield Implied("onnxscript", Spec.parse(f">={e.onnxscript_min}"),
                          f"torch {line}'s dynamo exporter imports onnxscript._framework_apis.{e.onnxscript_module} "
                          f"(first in onnxscript {e.onnxscript_min})", facts.TORCH_EXPORTER[line].source)
    ort, torch = ctx.candidates["onnxruntime"], ctx.candidates["torch"]
    if ort and all(line in facts.ORT_NUMPY1_ONLY for line in ort):
        yield Implied("numpy", Spec.parse("<2"), f"onnxruntime {span(ort)} is built against numpy 1.x",
                      facts.ORT_NUMPY1_ONLY[ort[0]].source)
    elif torch and all(lt(line, facts.TORCH_NUMPY2_FIRST.value) for line in torch):
        yield Implied("numpy", Spec.parse("<2"), f"torch {span(torch)} is built against numpy 1.x",
                      facts.TORCH_NUMPY2_FIRST.source)


# --- rules ---------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One registered check. An id may be registered once per case it checks (one row each in docs/rules.md)."""

    id: str  # what findings, `envctl matrix check` and docs/rules.md call it
    description: str  # one line: its row in docs/rules.md
    check: Callable[[RuleContext], None]  # emits findings on the context; each names its source


RULES: list[Rule] = []  # in check order


def rule(rule_id: str) -> Callable[[Callable[[RuleContext], None]], Callable[[RuleContext], None]]:
    """Register a function rule; its docstring is its one-line description."""
    def register(fn: Callable[[RuleContext], None]) -> Callable[[RuleContext], None]:
        RULES.append(Rule(rule_id, (fn.__doc__ or "").strip(), fn))
        return fn
    return register


def line_rule(rule_id: str, doc: str, pkg: str, test: Callable[[RuleContext, str], Fact | None], every: str, some: str,
               remedy: str, when: Callable[[RuleContext], bool] = lambda ctx: True,
               lines: Callable[[RuleContext], list[str]] | None = None,
               soft: Callable[[RuleContext], bool] = lambda ctx: False, also: Callable[[RuleContext], list[Fact]] = lambda ctx: [],
               partial: Callable[[RuleContext], bool] = lambda ctx: False) -> None:
    """Register a rule that judges each candidate line of `pkg` with `test` (see RuleContext.per_line)."""
    def check(ctx: RuleContext) -> None:
        if when(ctx):
            ctx.per_line(pkg, lines(ctx) if lines else ctx.candidates[pkg], lambda line: test(ctx, line), every, some,
                         remedy, soft(ctx), also(ctx), partial(ctx))
    RULES.append(Rule(rule_id, doc, check))


