"""Comparing ONNX Runtime with PyTorch, and the value-dependent-branch verdict.

Like polygraphy's comparator: NaN/Inf at the same positions on both sides match (and are
reported), error statistics per output (max, mean, p99 of absolute and relative error),
and a mismatch confined to some batch rows is described by what those rows' inputs share.
Imports: standard library, numpy, onnx. Loaded by path by the runner.
"""
import os
import re

import numpy as np

# The tracer's own words when forward turns a tensor into a Python value (the trace then
# keeps whatever that value was at export).
VALUE_WARNING = re.compile(r"Converting a tensor to a (Python|NumPy)|Iterating over a tensor")


def _stats(x):
    if not x.size:
        return 0.0, 0.0, 0.0
    return float(x.max()), float(x.mean()), float(np.percentile(x, 99))


def compare(ref, got, atol, rtol, read=None):
    """Per-output record: passed, violations, max/mean/p99 abs and rel error, nonfinite_matched,
    and the batch rows holding every violation (bad_rows). `read` (bool, broadcastable to the
    output) marks the positions a user reads; the others (padding) are left out of the verdict
    and their largest difference is reported apart (pad_max_abs)."""
    r, g = np.asarray(ref).astype(np.float64), np.asarray(got).astype(np.float64)
    keep = np.ones(r.shape, bool) if read is None else np.broadcast_to(np.asarray(read, bool), r.shape)
    both = ~np.isfinite(r) & ~np.isfinite(g)
    same = both & ((np.isnan(r) & np.isnan(g)) | (r == g))  # NaN with NaN, +inf with +inf
    fin = np.isfinite(r) & np.isfinite(g)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: those positions are judged apart
        full = np.abs(g - r)
    diff = full[fin & keep]
    rel = diff / np.maximum(np.abs(r[fin & keep]), 1e-12)
    wrong = ~same & ~(fin & np.isclose(g, r, atol=atol, rtol=rtol))  # |g - r| <= atol + rtol * |r|
    bad = wrong & keep
    max_abs, mean_abs, p99_abs = _stats(diff)
    max_rel, mean_rel, p99_rel = _stats(rel)
    if (~fin & ~same & keep).any():  # a NaN/Inf on one side only
        max_abs = max_rel = float("inf")
    out = {"max_abs": max_abs, "mean_abs": mean_abs, "p99_abs": p99_abs,
           "max_rel": max_rel, "mean_rel": mean_rel, "p99_rel": p99_rel,
           "violations": int(bad.sum()), "passed": not bool(bad.any()),
           "nonfinite_matched": int((same & keep).sum())}
    if read is not None:
        pad = ~keep
        out.update(compared=int(keep.sum()), pad_positions=int(pad.sum()),
                   pad_violations=int((wrong & pad).sum()),
                   pad_max_abs=(float("inf") if (~fin & ~same & pad).any()
                                else float(full[fin & pad].max()) if (fin & pad).any() else 0.0))
    if bad.any() and r.ndim >= 1 and r.shape[0] > 1:
        rows = sorted(set(np.nonzero(bad.reshape(r.shape[0], -1).any(axis=1))[0].tolist()))
        out["bad_rows"] = rows
    return out


MASK_NAME = re.compile(r"mask", re.I)  # attention_mask, input_mask, key_padding_mask
PAD_NAME = re.compile(r"pad", re.I)  # key_padding_mask, padding_mask: nonzero marks padding


def read_positions(names, arrays, domains, dynamic_axes, shape, declared, graph_inputs=None):
    """(mask name, bool array of the positions a user reads) for an output of `shape`, or
    (None, None): compare it whole. An output is read through a mask input (named *mask*,
    with a mask's values: the example's, or the padding the runner generates) when its
    leading axes are the mask's axes: the same sizes, every dynamic axis of the mask dynamic
    in the graph's declared output too (a pooled output whose hidden size happens to equal
    the sequence length is not), and, where sizes alone are ambiguous (batch == sequence,
    or a sequence-first output), the same dim names in the graph as the mask's."""
    for name, a, d in zip(names, arrays, domains):
        a = np.asarray(a)
        if (d.get("kind") != "mask" or not MASK_NAME.search(name) or a.ndim < 2 or len(shape) < a.ndim
                or tuple(shape[:a.ndim]) != a.shape):
            continue
        axes = [ax for ax in dynamic_axes.get(name, {}) if 0 < ax < a.ndim]
        out_dims = list(declared or [])[:a.ndim] if declared and len(declared) == len(shape) else []
        if out_dims and any(isinstance(out_dims[ax], int) for ax in axes):
            continue
        if len(set(a.shape)) < a.ndim:  # sizes alone cannot tell the axes apart
            in_dims = list((graph_inputs or {}).get(name) or [])[:a.ndim]
            if not (out_dims and in_dims and all(isinstance(x, str) for x in in_dims) and out_dims == in_dims):
                continue
        real = (a != 0) if not PAD_NAME.search(name) else (a == 0)
        if real.all():
            return name, None  # nothing to leave out
        return name, real.reshape(a.shape + (1,) * (len(shape) - a.ndim))
    return None, None


def precision(ref32, got, ref64, read, atol, rtol, factor):
    """ONNX (got) and float32 PyTorch (ref32) judged against float64 PyTorch (ref64), on the
    positions a user reads: the three largest differences, and whether ONNX is within
    `factor` times float32 PyTorch's own error (plus atol + rtol*|ref64|) at every position."""
    r32, g, r64 = (np.asarray(x).astype(np.float64) for x in (ref32, got, ref64))
    keep = np.ones(r32.shape, bool) if read is None else np.broadcast_to(np.asarray(read, bool), r32.shape)
    fin = np.isfinite(r32) & np.isfinite(g) & np.isfinite(r64) & keep
    if r64.shape != r32.shape or (keep & ~fin).any() or not fin.any():
        return None  # NaN/Inf, or another shape: float64 says nothing about float32 error here
    e_torch = np.abs(r32 - r64)[fin]
    e_onnx = np.abs(g - r64)[fin]
    own = float(e_torch.max())
    limited = bool((e_onnx <= factor * own + atol + rtol * np.abs(r64[fin])).all())
    return {"onnx_vs_torch32": float(np.abs(g - r32)[fin].max()), "torch32_vs_torch64": own,
            "onnx_vs_torch64": float(e_onnx.max()), "factor": factor, "precision_limited": limited}


def rows_note(out, sizes_rows, names, arrays, domains, shared_by):
    """' (only rows [1, 3] of 4 differ: those alone have attention_mask is all zeros)' or ''."""
    rows = out.get("bad_rows")
    if not rows or len(rows) >= sizes_rows:
        return ""
    shared = shared_by(rows, sizes_rows, names, arrays, domains)
    what = ("; those rows alone have " + " and ".join(shared)) if shared else ""
    return " (only rows %s of %d differ%s)" % (rows, sizes_rows, what)


def value_sites(caught, torch_dir):
    """file:line of every tracer warning that a tensor became a Python value, in the model's
    own code (not torch's input checks)."""
    sites = []
    for w in caught:
        if w.category.__name__ != "TracerWarning" or not VALUE_WARNING.search(str(w.message)):
            continue
        if os.path.abspath(w.filename).startswith(torch_dir):
            continue
        site = "%s:%s" % (os.path.basename(w.filename), w.lineno)
        if site not in sites:
            sites.append(site)
    return sites


SHAPE_READ = re.compile(r"\.shape\b|\.size\(|\blen\(|\.numel\(|\.dim\(|\.ndim\b")


def shape_sites(caught, torch_dir):
    """The value sites (file:line) whose source line reads a tensor's shape (x.shape[1],
    x.size(0), len(x)): a frozen size, not a frozen value."""
    import linecache
    out = []
    for w in caught:
        site = "%s:%s" % (os.path.basename(w.filename), w.lineno)
        if site in value_sites([w], torch_dir) and site not in out and SHAPE_READ.search(
                linecache.getline(w.filename, w.lineno).split("#", 1)[0]):
            out.append(site)
    return out


def graph_signature(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    return [n.op_type for n in m.graph.node]


def graphs_differ(path_a, path_b):
    return graph_signature(path_a) != graph_signature(path_b)
