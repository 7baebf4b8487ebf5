"""Inputs that look like the user's, for the envctl smoke runner.

Every test input is drawn from a per-input *domain*: declared (`ranges`), or inferred from
the example (and samples): dtype, sign, min..max; integer ids that feed an nn.Embedding
span its vocabulary; 0/1 and bool masks get realistic padding patterns, never an all-zero
row unless the example has one. Groups: "random" (the sweep), and at the export sizes the
adversarial groups that flip value-dependent branches: "sign_flipped", "zeros", "large",
and the user's "example" itself. Same seed, shapes and domain => same bytes in every env.
Imports: standard library, torch, numpy. Loaded by path by the runner.
"""
import json
import re
import zlib
from typing import Dict, List, Set

import numpy as np
import torch
from torch import nn

ADVERSARIAL = ("sign_flipped", "zeros", "large", "example")
# After a tracer warning on a value: the example beyond its span (envctl_smoke_domain.branch_inputs).
BRANCH = ("scaled_255", "negated", "scaled_1e3", "dtype_low", "dtype_high")
_POSITION = re.compile(r"pos|^wpe$", re.I)  # position_embeddings, embed_positions, pos_embed, GPT-2's wpe
_LIMIT_ATTRS = ("max_position_embeddings", "n_positions", "max_source_positions", "max_target_positions")


def _values(tensors):
    arrs = [t.detach().cpu().reshape(-1).to(torch.float64).numpy() for t in tensors if t.numel()]
    return np.concatenate(arrs) if arrs else np.zeros(0)


def embedding_feeds(case):
    """{input index: num_embeddings} for inputs that reach an nn.Embedding unchanged, found by
    running the model once on the example with forward pre-hooks on every embedding."""
    seen: Dict[int, int] = {}
    hooks = []
    inputs = list(case["inputs"])

    def hook(module, args):
        for i, t in enumerate(inputs):
            if args and isinstance(args[0], torch.Tensor) and args[0].shape == t.shape and (
                    args[0] is t or (args[0].dtype == t.dtype and torch.equal(args[0].cpu(), t.cpu()))):
                seen[i] = min(seen.get(i, module.num_embeddings), module.num_embeddings)
    for m in case["model"].modules():
        if isinstance(m, nn.Embedding):
            hooks.append(m.register_forward_pre_hook(hook))
    if not hooks:
        return {}
    try:
        with torch.no_grad():
            case["model"](*inputs)
    except Exception:  # pre_export reports a failing forward itself
        pass
    finally:
        for h in hooks:
            h.remove()
    return seen


def position_limit(model):
    """The longest sequence the model can take, from its position embeddings or config."""
    limits = [m.num_embeddings for name, m in model.named_modules()
              if isinstance(m, nn.Embedding) and _POSITION.search(name.split(".")[-1])]
    for m in model.modules():  # a wrapped Hugging Face model keeps its config one level down
        config = getattr(m, "config", None)
        limits += [getattr(config, a) for a in _LIMIT_ATTRS if isinstance(getattr(config, a, None), int)]
    return min(limits) if limits else None


def _is_mask(name, t):
    """A 0/1 (or bool) mask: by name (any dtype), or by value (integer, 2-D and up). An
    additive float mask (0 / -inf) is not one: it keeps its own values' domain."""
    if t.dtype == torch.bool:
        return t.dim() >= 1
    zero_one = t.numel() > 0 and bool(((t == 0) | (t == 1)).all())
    if re.search(r"mask", name, re.I):
        return zero_one
    return not t.is_floating_point() and t.dim() >= 2 and zero_one


def analyse(case, samples):
    """Domains of every input: [{"kind", "low", "high", "source", ...}] and the dims'
    limits {dim_name: max size} (declared `max`, else a position-embedding size)."""
    feeds = embedding_feeds(case)
    ranges = case.get("ranges") or {}
    domains = []
    for i, (name, t) in enumerate(zip(case["input_names"], case["inputs"])):
        seen = [t] + [s[i] for s in samples]
        vals = _values(seen)
        lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 0.0)
        if name in ranges:
            low, high = (float(v) for v in ranges[name])
            kind = "float" if t.is_floating_point() else "int"
            d = {"kind": kind, "low": low, "high": high if kind == "float" else high + 1, "source": "declared"}
        elif i in feeds and not t.is_floating_point():
            d = {"kind": "int", "low": 0, "high": int(feeds[i]), "source": "nn.Embedding vocabulary"}
        elif _is_mask(name, t):
            rows = t.detach().cpu().reshape(-1, t.shape[-1]) if t.dim() else t.reshape(1, 1)
            d = {"kind": "mask", "low": 0, "high": 1, "source": "mask (%s)" % ("name" if "mask" in name.lower()
                                                                           else "0/1 values"),
                 "zero_rows": bool(t.numel() and (rows == 0).all(dim=-1).any())}
        elif t.dtype == torch.bool:
            d = {"kind": "bool", "low": 0, "high": 1, "source": "dtype"}
        elif t.is_floating_point():
            if hi > lo:  # the example says what values look like: keep its sign and span
                d = {"kind": "float", "low": 0.0 if lo >= 0 else lo, "high": 0.0 if hi <= 0 else hi,
                     "source": "example" + (" (non-negative)" if lo >= 0 else " (non-positive)" if hi <= 0 else "")}
            else:  # a constant example (torch.zeros) says nothing: standard normal
                d = {"kind": "normal", "low": None, "high": None, "source": "constant example"}
        else:
            d = {"kind": "int", "low": int(lo), "high": max(int(hi) + 1, int(lo) + 1), "source": "example range"}
        d["name"] = name
        domains.append(d)
    limits: Dict[str, int] = {}
    pos = position_limit(case["model"])
    for name, _t, d in zip(case["input_names"], case["inputs"], domains):
        for _axis, dim in case["dynamic_axes"].get(name, {}).items():
            if dim != "batch" and pos and d["kind"] in ("int", "mask", "bool"):
                limits[dim] = min(limits.get(dim, pos), pos)
    for dim, n in (case.get("max") or {}).items():
        limits[str(dim)] = min(limits.get(str(dim), int(n)), int(n))
    return domains, limits


def _mask(rng, shape, dtype, zero_rows, group):
    """Realistic padding, row by row along the last axis: all ones, right-padded,
    left-padded, a single real token, then random right/left padding."""
    if not shape:
        return np.ones(shape)
    n = shape[-1]
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    out = np.ones((rows, n))
    shift = ADVERSARIAL.index(group) + 1 if group in ADVERSARIAL else 0  # another row order per group
    for r in range(rows):
        pattern = (r + shift) % 5
        real = int(rng.randint(1, n + 1)) if n > 1 else 1
        if pattern == 0 or n == 1:
            continue
        if pattern == 1 or (pattern == 4 and rng.uniform() < 0.5):
            out[r, real:] = 0
        elif pattern in (2, 4):
            out[r, :n - real] = 0
        else:
            out[r, 1:] = 0
    if zero_rows and rows > 1:  # the example has pure-padding rows: so may these
        out[rows - 1] = 0
    return out.reshape(shape)


def generate(t, d, shape, rng, group):
    """One input of `shape` in domain `d` for `group` (numpy array)."""
    kind = d["kind"]
    if kind == "mask":
        return _mask(rng, shape, t.dtype, d.get("zero_rows"), group)
    if kind == "bool":
        base = rng.uniform(size=shape) < 0.5
        return {"sign_flipped": ~base, "zeros": np.zeros(shape, bool), "large": np.ones(shape, bool)}.get(group, base)
    if kind == "int":
        low, high = int(d["low"]), int(d["high"])
        base = rng.randint(low, max(high, low + 1), size=shape)
        if group == "sign_flipped":
            return low + high - 1 - base  # mirrored within the domain
        if group == "zeros":
            return np.full(shape, 0 if low <= 0 < high else low)
        if group == "large":
            return np.full(shape, high - 1) - rng.randint(0, max(1, (high - low) // 10), size=shape)
        return base
    if kind == "normal":
        base = rng.standard_normal(shape)
        return {"sign_flipped": -base, "zeros": np.zeros(shape), "large": 3.0 + np.abs(base)}.get(group, base)
    lo, hi = float(d["low"]), float(d["high"])
    base = rng.uniform(lo, hi, size=shape)
    if group == "sign_flipped":
        return np.clip(-base, lo, hi) if lo < 0 < hi else lo + hi - base  # mirrored if one-signed
    if group == "zeros":
        return np.full(shape, 0.0 if lo <= 0 <= hi else lo)
    if group == "large":
        top = hi if abs(hi) >= abs(lo) else lo
        return top - (top - (lo + hi) / 2) * 0.1 * rng.uniform(size=shape)
    return base


def make(case, shapes, seed, group="random"):
    """Seeded tensors of `shapes` for `group` ("example" returns the example itself)."""
    if group == "example":
        return [t.detach().clone() for t in case["inputs"]]
    if group in BRANCH:
        import envctl_smoke_domain as domain  # loaded by the runner before any comparison runs
        return domain.branch_inputs(case, group)
    out = []
    for i, (t, shape, d) in enumerate(zip(case["inputs"], shapes, case["domains"])):
        key = json.dumps([seed, i, list(shape), str(t.dtype)]).encode()
        rng = np.random.RandomState(zlib.crc32(key))
        arr = generate(t, d, tuple(shape), rng, group)
        if t.is_floating_point():
            arr = np.asarray(arr, dtype=np.float32)
        elif t.dtype == torch.bool:
            arr = np.asarray(arr).astype(bool)
        else:
            arr = np.asarray(arr).astype(np.int64)
        out.append(torch.from_numpy(np.ascontiguousarray(arr)).to(t.dtype))
    return out


def describe_domains(case):
    return {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in case["domains"]}


def row_features(name, arr, d):
    """Per batch row: the facts a mismatch may share ("attention_mask is all zeros")."""
    a = np.asarray(arr)
    if a.ndim == 0:
        return []
    rows = a.reshape(a.shape[0], -1).astype(np.float64)
    feats = []
    for r in rows:
        f = set()
        if r.size and (r == 0).all():
            f.add("%s is all zeros" % name)
        if d["kind"] == "mask" and r.size:
            if (r != 0).all():
                f.add("%s has no padding" % name)
            elif (r != 0).sum() == 1:
                f.add("%s has a single real token" % name)
            elif r[0] == 0:
                f.add("%s is left-padded" % name)
            elif r[-1] == 0:
                f.add("%s is right-padded" % name)
        elif r.size:
            if (r < 0).any():
                f.add("%s has negative values" % name)
            if (r >= 0).all():
                f.add("%s is non-negative" % name)
        feats.append(f)
    return feats


def shared_by(bad_rows, n_rows, names, arrays, domains):
    """What the inputs of the failing rows, and only those, have in common (or None)."""
    per_row: List[Set[str]] = [set() for _ in range(n_rows)]
    for name, a, d in zip(names, arrays, domains):
        if np.ndim(a) and np.shape(a)[0] == n_rows:
            for r, f in enumerate(row_features(name, a, d)):
                per_row[r] |= f
    common = set.intersection(*[per_row[r] for r in bad_rows]) if bad_rows else set()
    good = [r for r in range(n_rows) if r not in bad_rows]
    only = sorted(f for f in common if not any(f in per_row[r] for r in good))
    return only or None
