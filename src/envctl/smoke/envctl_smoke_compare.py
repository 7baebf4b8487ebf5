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


def compare(ref, got, atol, rtol):
    """Per-output record: passed, violations, max/mean/p99 abs and rel error, nonfinite_matched,
    and the batch rows holding every violation (bad_rows)."""
    r, g = np.asarray(ref).astype(np.float64), np.asarray(got).astype(np.float64)
    both = ~np.isfinite(r) & ~np.isfinite(g)
    same = both & ((np.isnan(r) & np.isnan(g)) | (r == g))  # NaN with NaN, +inf with +inf
    fin = np.isfinite(r) & np.isfinite(g)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: those positions are judged apart
        diff = np.abs(g - r)[fin]
    rel = diff / np.maximum(np.abs(r[fin]), 1e-12)
    bad = ~same & ~(fin & np.isclose(g, r, atol=atol, rtol=rtol))  # |g - r| <= atol + rtol * |r|
    max_abs, mean_abs, p99_abs = _stats(diff)
    max_rel, mean_rel, p99_rel = _stats(rel)
    if (~fin & ~same).any():  # a NaN/Inf on one side only
        max_abs = max_rel = float("inf")
    out = {"max_abs": max_abs, "mean_abs": mean_abs, "p99_abs": p99_abs,
           "max_rel": max_rel, "mean_rel": mean_rel, "p99_rel": p99_rel,
           "violations": int(bad.sum()), "passed": not bool(bad.any()),
           "nonfinite_matched": int(same.sum())}
    if bad.any() and r.ndim >= 1 and r.shape[0] > 1:
        rows = sorted(set(np.nonzero(bad.reshape(r.shape[0], -1).any(axis=1))[0].tolist()))
        out["bad_rows"] = rows
    return out


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


def graph_signature(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    return [n.op_type for n in m.graph.node]


def graphs_differ(path_a, path_b):
    return graph_signature(path_a) != graph_signature(path_b)
