"""The model's own domain, for the envctl smoke runner: which sizes PyTorch eager accepts on
each dynamic axis (found before the sweep by bisecting from the export size), which sizes
torch.export certified (its range constraints, under dynamo), whether a compared case lies
outside the domain (PyTorch raises, or returns NaN/Inf where the example does not), and the
inputs that search for the other side of a value-dependent branch the tracer warned about.

A case outside the domain is skipped and reported as a caveat, never a failure: PyTorch
gives no answer there for the export to be wrong about. Caveats are {"kind", "message",
"where"}; the runner lists them per run and the host types them (envctl_smoke_protocol.Caveat).
Imports: standard library, torch, numpy, envctl_smoke_inputs. Loaded by path by the runner.
"""
import math
import weakref
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from envctl_smoke_inputs import BRANCH  # noqa: F401  (sibling: the group names live with the inputs)

BISECT_STEPS = 12  # per bound of each axis: enough for sizes up to 4096 from the export size
_SCALE = {"scaled_255": 255.0, "negated": -1.0, "scaled_1e3": 1e3}
# float32 rounding grows with the inputs' magnitude: on inputs scaled by s, atol is scaled by |s|.
# A flipped branch differs by far more (x/255 against x: 254 parts in 255).
ATOL_SCALE = {g: abs(s) for g, s in _SCALE.items()}


def caveat(kind, message, where=None):
    return {"kind": kind, "message": message, "where": where}


def tensors_in(out):
    """Every tensor in a model's output (tuples, lists and dicts, nested); anything else is ignored."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in tensors_in(item)]
    return []


def eager(model, tensors):
    """`model(*tensors)` under no_grad, leaving the model as it found it.

    Some models change themselves in forward: Swin shrinks a layer's window to a small
    input's size and keeps it; a cache sets an attribute or fills a buffer. Probing the
    domain at size 1 must not change what the export and the reference see afterwards, so
    each module's attributes are put back as they were, and a buffer written in place (its
    version counter moved) is restored from the copy taken the first time the model ran."""
    if not isinstance(model, torch.nn.Module):
        with torch.no_grad():
            return model(*tensors)
    modules = list(model.modules())
    attrs = [dict(vars(m)) for m in modules]
    held = [dict(m._buffers) for m in modules]  # a buffer replaced (self.cache = new) is put back too
    if model not in _PRISTINE_BUFFERS:
        _PRISTINE_BUFFERS[model] = {id(b): b.detach().clone() for m in modules for b in m._buffers.values()
                                    if b is not None}
    versions = [(b, b._version) for m in modules for b in m._buffers.values() if b is not None]
    try:
        with torch.no_grad():
            return model(*tensors)
    finally:
        for m, before, buffers in zip(modules, attrs, held):
            _put_back(vars(m), before)
            _put_back(m._buffers, buffers)
        pristine = _PRISTINE_BUFFERS[model]
        with torch.no_grad():
            for b, version in versions:
                if b._version != version and id(b) in pristine:
                    b.copy_(pristine[id(b)])


def _put_back(now, before):
    """Make dict `now` hold exactly what `before` held (compared by identity: a tensor has
    no plain ==)."""
    if now.keys() != before.keys() or any(now[k] is not v for k, v in before.items()):
        now.clear()
        now.update(before)


# a string: WeakKeyDictionary takes no [...] at runtime before Python 3.9
_PRISTINE_BUFFERS: "weakref.WeakKeyDictionary[Any, Dict[int, torch.Tensor]]" = weakref.WeakKeyDictionary()  # model -> {id(buffer): its value before any probe}


def nonfinite(outs):
    """True when any floating output holds a NaN or an Inf."""
    return any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in outs)


def _first_line(e):
    lines = [l for l in str(e).strip().splitlines() if l.strip()]
    return ("%s: %s" % (type(e).__name__, lines[0] if lines else ""))[:300]


def accepts(case, make_inputs, sizes, seed, device):
    """(True, None) when PyTorch eager runs the model at `sizes` and answers as finitely as on
    the example; else (False, why)."""
    try:
        tensors = [t.to(device) for t in make_inputs(case, sizes, seed, "random")]
        with torch.no_grad():
            outs = tensors_in(eager(case["model"], tensors))
    except Exception as e:  # the model refuses these inputs: that is the answer
        return False, _first_line(e)
    if nonfinite(outs) and not case.get("example_nonfinite"):
        return False, "PyTorch returns NaN/Inf (not on the example)"
    return True, None


def _bisect(ok_at, bad_at, probe):
    """The accepted size nearest `bad_at`, between `ok_at` (accepted) and `bad_at` (refused)."""
    for _ in range(BISECT_STEPS):
        if abs(bad_at - ok_at) <= 1:
            break
        mid = (ok_at + bad_at) // 2
        if probe(mid)[0]:
            ok_at = mid
        else:
            bad_at = mid
    return ok_at


def discover(case, planned, exp, make_inputs, seed, device):
    """{dim: {"low", "high", "below", "above"}}: the sizes PyTorch eager accepts on each
    dynamic axis within the planned ones ({dim: [sizes]}), the others at their export size.
    "below"/"above" say why smaller/larger sizes are refused (None when none is). Acceptance
    is taken to be an interval; each compared case is checked again (`outside`), so a model
    with holes in its domain (multiples of 8 only) still never fails for them."""
    case["example_nonfinite"] = _example_nonfinite(case, device)
    found = {}
    for dim, sizes in planned.items():
        e = exp.get(dim, 2)
        seen: Dict[int, Tuple[bool, Optional[str]]] = {}

        def probe(n, dim=dim, seen=seen):
            if n not in seen:
                seen[n] = accepts(case, make_inputs, dict(exp, **{dim: n}), seed, device)
            return seen[n]
        low, high, below, above = min(sizes + [e]), max(sizes + [e]), None, None
        if low < e:
            ok, why = probe(low)
            if not ok:
                low, below = _bisect(e, low, probe), why
        if high > e:
            ok, why = probe(high)
            if not ok:
                high, above = _bisect(e, high, probe), why
        found[dim] = {"low": low, "high": high, "below": below, "above": above, "probes": len(seen)}
    return found


def _example_nonfinite(case, device):
    try:
        return nonfinite(tensors_in(eager(case["model"], [t.to(device) for t in case["inputs"]])))
    except Exception:  # pre_export reports a failing forward itself
        return False


def learn(details, case, sizes, exact, seed, device, models):
    """Before the sweep: each dynamic axis's accepted sizes (case["size_domain"]), within a
    declared `max` or a position table (case["limits"]); caveats for planned sizes outside."""
    limits = case.get("limits") or {}
    planned = models.dim_sizes(case, sizes, limits, exact)
    found = discover(case, planned, models.export_sizes(case), models.make_inputs, seed, device)
    for dim, cap in limits.items():
        if dim in found and found[dim]["high"] > cap:
            found[dim].update(high=int(cap), above="beyond the declared max or the position table")
    case["size_domain"] = found
    details["size_domain"] = found
    details.setdefault("caveats", []).extend(size_caveats(found, planned))


def range_caveats(case, ranges):
    """Caveats where torch.export certified less than PyTorch eager accepts."""
    notes = []
    for dim, d in (case.get("size_domain") or {}).items():
        r = ranges.get(dim)
        if r and (_export_low(r) > d["low"] or (r[1] is not None and r[1] < d["high"])):
            notes.append(caveat("outside_domain", "torch.export certified %s in [%d, %s] only: sizes outside "
                                "are not compared" % (dim, r[0], "inf" if r[1] is None else r[1]), dim))
    return notes


def export_ranges(program, case):
    """{dim: [low, high or None]} from torch.export's range constraints (dynamo), read off the
    user inputs' symbolic shapes; {} when the program has none."""
    ep = getattr(program, "exported_program", None)
    if ep is None:
        return {}
    bounds = {}
    for sym, vr in getattr(ep, "range_constraints", {}).items():
        low, high = vr.lower, vr.upper
        bounds[str(sym)] = [int(low) if _finite(low) else 0, int(high) if _finite(high) else None]
    user = list(getattr(ep.graph_signature, "user_inputs", []))
    nodes = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in user]
    out: Dict[str, List[Optional[int]]] = {}
    for name, node in zip(case["input_names"], nodes):
        val = node.meta.get("val")
        for axis, dim in case["dynamic_axes"].get(name, {}).items():
            if val is not None and axis < len(val.shape) and str(val.shape[axis]) in bounds:
                out.setdefault(dim, bounds[str(val.shape[axis])])
    return out


def _finite(v):
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError, OverflowError):
        return False


def _export_low(r):
    """torch.export's lower bound where it restricts the model: a bound of 2 or less is its own
    0/1 specialization convention (older releases report dynamic dims as >= 2), not the model's."""
    return r[0] if r and r[0] > 2 else 0


def limit(domain, ranges):
    """The axes' accepted [low, high] from eager's domain and torch.export's ranges together."""
    out = {}
    for dim, d in domain.items():
        low, high = d["low"], d["high"]
        r = ranges.get(dim)
        if r:
            low = max(low, _export_low(r))
            high = min(high, r[1]) if r[1] is not None else high
        out[dim] = [low, high]
    return out


def size_caveats(domain, planned):
    """One caveat per axis and side whose planned sizes lie outside what the model accepts."""
    notes = []
    for dim, sizes in planned.items():
        d = domain.get(dim)
        if not d:
            continue
        below = sorted({n for n in sizes if n < d["low"]})
        above = sorted({n for n in sizes if n > d["high"]})
        if below:
            notes.append(caveat("outside_domain", "sizes below %s=%d are not accepted by the model (%s%s: %s): "
                                "skipped" % (dim, d["low"], dim, _list(below), d["below"] or "refused"), dim))
        if above:
            notes.append(caveat("outside_domain", "sizes above %s=%d are not accepted by the model (%s%s: %s): "
                                "skipped" % (dim, d["high"], dim, _list(above), d["above"] or "refused"), dim))
    return notes


def _list(sizes):
    return "=" + ", ".join(str(n) for n in sizes)


def outside(case, arrays):
    """Why PyTorch's answer (numpy arrays) puts these inputs outside the model's domain, or None."""
    bad = any(np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all() for a in arrays)
    if bad and not case.get("example_nonfinite"):
        return "outside the model's domain: PyTorch returns NaN/Inf here (not on the example); not compared"
    return None


def branch_inputs(case, group):
    """The example pushed beyond its span for `group` (BRANCH): scaled by 255, by -1, by 1e3,
    or at the dtype's edges (integers: the domain's, e.g. a vocabulary's first and last id),
    then clipped to any declared `ranges`. Masks and bools stay as they are."""
    ranges = case.get("ranges") or {}
    out = []
    for name, t, d in zip(case["input_names"], case["inputs"], case["domains"]):
        t = t.detach().cpu()
        if t.dtype == torch.bool or d["kind"] in ("mask", "bool"):
            out.append(t.clone())
            continue
        info = torch.finfo(t.dtype) if t.is_floating_point() else torch.iinfo(t.dtype)
        # integers stay clear of the dtype's very top: int64's edge is not exact in float64
        top, bottom = (info.max, info.min) if t.is_floating_point() else (info.max // 2, info.min // 2)
        if group in _SCALE:
            a = (t.to(torch.float64) * _SCALE[group]).clamp(bottom, top)
        elif t.is_floating_point() or d["source"] == "example range":
            a = torch.full(t.shape, float(bottom if group == "dtype_low" else top), dtype=torch.float64)
        else:  # integer domains are [low, high): a vocabulary's first and last id
            a = torch.full(t.shape, float(d["low"] if group == "dtype_low" else d["high"] - 1), dtype=torch.float64)
        if name in ranges:
            a = a.clamp(float(ranges[name][0]), float(ranges[name][1]))
        out.append(a.to(t.dtype) if t.is_floating_point() else a.round().to(t.dtype))
    return out


def branch_caveats(sites, flipped):
    """One caveat per value-dependent line no input showed to be wrong (`flipped`: sites a
    compared case failed on, i.e. that became a verdict instead)."""
    return [caveat("branch_not_exercised", "branch at %s not exercised: no input tried (the example, its "
                   "sign flipped, zeros, large values, x255, x-1, x1e3, the dtype's edges, within any declared "
                   "ranges) made ONNX differ from PyTorch; give real `samples` that take the other side" % s, s)
            for s in sites if s not in flipped]
