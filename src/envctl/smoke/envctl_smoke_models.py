"""Built-in smoke models, user-model loading and seeded inputs for the envctl smoke runner.

Runs inside the target env: standard library, torch and numpy only. The runner loads
this file by path, so its name is prefixed to never shadow a user's module.
"""
import importlib
import math
import os
import re
import sys
from typing import Any, Callable, Dict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from envctl_smoke_builtins import BUILTIN_NAMES  # sibling file: the one list of names


class ModelError(Exception):
    """The model callable raised or returned something the runner cannot use."""


class SmokeCNN(nn.Module):
    """ResNet-like: conv/BN/ReLU stem, one residual block, strided conv, pooling, custom head."""

    def __init__(self, width=8, classes=10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2))
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        # A hand-written head (matmul + bias) rather than nn.Linear, as users often have.
        self.head_weight = nn.Parameter(torch.empty(classes, 2 * width))
        self.head_bias = nn.Parameter(torch.empty(classes))

    def forward(self, x):
        x = self.stem(x)
        y = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(x + self.bn2(self.conv2(y)))
        x = torch.flatten(self.pool(F.relu(self.down(x))), 1)
        return x @ self.head_weight.t() + self.head_bias


class SmokeTransformerBlock(nn.Module):
    """Pre-norm block with explicit multi-head self-attention and a GELU MLP.

    Attention is written out instead of nn.MultiheadAttention: on torch 2.13 the
    TorchScript exporter bakes the export-time batch/sequence into MHA's Reshape nodes,
    so the built-in would fail the shape sweep for a reason that is not the env's fault.
    """

    def __init__(self, dim=32, heads=4, hidden=64):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.ln1 = nn.LayerNorm(dim)
        # Three projections, not one fused qkv + chunk: chunk becomes Split(num_outputs), which
        # the dynamo exporter's 18->17 down-conversion leaves invalid on torch 2.13/onnx 1.23.
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        b, s, d = x.shape
        y = self.ln1(x)
        q, k, v = (p(y).reshape(b, s, self.heads, self.head_dim).transpose(1, 2)
                   for p in (self.q, self.k, self.v))
        att = torch.softmax((q @ k.transpose(-2, -1)) * (self.head_dim ** -0.5), dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, s, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class SmokeRNN(nn.Module):
    """LSTM over a batch-first sequence, then a linear layer on every step."""

    def __init__(self, features=8, hidden=16, out=4):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, out)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y)


def deterministic_init(module, seed):
    """Overwrite every float parameter/buffer from numpy's legacy RandomState.

    torch.manual_seed alone does not promise the same weights across torch releases;
    RandomState's stream is frozen (NEP 19), so fingerprints compare across envs.
    """
    rng = np.random.RandomState(seed)
    named = list(module.named_parameters()) + list(module.named_buffers())
    with torch.no_grad():
        for name, t in named:
            if not t.is_floating_point():
                continue
            shape = tuple(t.shape)
            if name.endswith("running_var"):
                arr = rng.uniform(0.5, 1.5, shape)
            elif len(shape) >= 2:
                bound = 1.0 / math.sqrt(max(1, int(np.prod(shape[1:]))))
                arr = rng.uniform(-bound, bound, shape)
            elif name.endswith("weight"):  # norm scales hover around 1
                arr = 1.0 + 0.1 * rng.standard_normal(shape)
            else:  # biases and BN running means
                arr = 0.1 * rng.standard_normal(shape)
            t.copy_(torch.from_numpy(np.asarray(arr, dtype=np.float32)).to(t.dtype))
    return module


# name -> builder: () -> (model, example input, dynamic_axes, (input_names, output_names)). A name
# declared in envctl_smoke_builtins.BUILTIN_NAMES without a builder here is a model_error, named.
BUILDERS: Dict[str, Callable[[], Any]] = {}


def builtin(name):
    """Register a built-in model's builder under `name` (also declare it in envctl_smoke_builtins)."""
    def register(build):
        BUILDERS[name] = build
        return build
    return register


@builtin("cnn")
def _cnn():
    return SmokeCNN(), torch.zeros(1, 3, 32, 32), {"x": {0: "batch"}, "logits": {0: "batch"}}, (["x"], ["logits"])


@builtin("transformer")
def _transformer():
    axes = {"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}}
    return SmokeTransformerBlock(), torch.zeros(2, 6, 32), axes, (["x"], ["y"])


@builtin("rnn")
def _rnn():
    return SmokeRNN(), torch.zeros(2, 6, 8), {"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}}, (["x"], ["y"])


def _builtin(name, seed):
    torch.manual_seed(seed)
    if name not in BUILDERS:
        raise ModelError("built-in model %r is declared in envctl_smoke_builtins.py but has no builder: register one "
                         "with @builtin(%r) in envctl_smoke_models.py" % (name, name))
    model, x, axes, names = BUILDERS[name]()
    deterministic_init(model, seed)
    return {"model": model.eval(), "inputs": (x,), "input_names": names[0],
            "output_names": names[1], "dynamic_axes": axes}


def _call_user(ref, seed):
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ModelError("model reference %r is neither a built-in (%s) nor 'module:callable'"
                         % (ref, ", ".join(BUILTIN_NAMES)))
    obj: Any = importlib.import_module(module_name)  # then the callable the reference names in it
    for part in attr.split("."):
        obj = getattr(obj, part)
    torch.manual_seed(seed)
    return obj()


def _dim_name(input_name, axis):
    return "batch" if axis == 0 else re.sub(r"\W", "_", "%s_%d" % (input_name, axis))


def _axes_map(value, name):
    """Accept [axis, ...] or {axis: dim_name}; return {axis: dim_name}."""
    if isinstance(value, dict):
        return {int(k): str(v) for k, v in value.items()}
    return {int(a): _dim_name(name, int(a)) for a in value}


def load_case(ref, seed):
    """Build the model named by ref and normalize what it returns into a case dict.

    Keys: model, inputs (tuple of tensors), input_names, output_names (None: derived
    later from the outputs), dynamic_axes {name: {axis: dim_name}}, atol, rtol (or None).
    """
    raw = _builtin(ref, seed) if ref in BUILTIN_NAMES else _call_user(ref, seed)
    if isinstance(raw, dict):
        if "model" not in raw or "inputs" not in raw:
            raise ModelError("the returned dict needs 'model' and 'inputs', got keys %s" % sorted(raw))
        case = dict(raw)
    elif isinstance(raw, (tuple, list)) and len(raw) == 2:
        case = {"model": raw[0], "inputs": raw[1]}
    else:
        raise ModelError("expected (model, example_inputs) or a dict, got %s" % type(raw).__name__)
    if not isinstance(case["model"], nn.Module):
        raise ModelError("'model' is a %s, not a torch.nn.Module" % type(case["model"]).__name__)
    inputs = case["inputs"]
    inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise ModelError("'inputs' must be a non-empty tuple of tensors")
    case["inputs"] = inputs
    names = case.get("input_names") or (
        ["input"] if len(inputs) == 1 else ["input_%d" % i for i in range(len(inputs))])
    if len(names) != len(inputs):
        raise ModelError("%d input_names for %d inputs" % (len(names), len(inputs)))
    case["input_names"] = [str(n) for n in names]
    case.setdefault("output_names", None)
    if case.get("dynamic_axes") is None:  # batch (dim 0) of every input unless told otherwise
        case["dynamic_axes"] = {n: {0: "batch"} for n, t in zip(names, inputs) if t.dim() >= 1}
    else:
        case["dynamic_axes"] = {str(k): _axes_map(v, str(k)) for k, v in case["dynamic_axes"].items()}
    case.setdefault("atol", None)
    case.setdefault("rtol", None)
    ranges = case.get("ranges") or {}
    if not isinstance(ranges, dict) or not all(
            isinstance(v, (list, tuple)) and len(v) == 2 and v[0] <= v[1] for v in ranges.values()):
        raise ModelError("'ranges' must be {input_name: [low, high]} with low <= high")
    unknown = sorted(set(ranges) - set(case["input_names"]))
    if unknown:
        raise ModelError("'ranges' names %s, which are not inputs %s" % (unknown, case["input_names"]))
    if not isinstance(case.get("max") or {}, dict):
        raise ModelError("'max' must be {dim_name: largest size}")
    if not isinstance(case.get("samples") or [], (list, tuple)):
        raise ModelError("'samples' must be a list of input tuples or {input_name: tensor} dicts")
    return case


def dim_names(case):
    """Distinct dynamic dim names of the inputs, batch first, then in order of appearance."""
    seen = []
    for name in case["input_names"]:
        for axis in sorted(case["dynamic_axes"].get(name, {})):
            dim = case["dynamic_axes"][name][axis]
            if dim not in seen:
                seen.append(dim)
    return sorted(seen, key=lambda d: d != "batch")


def input_shapes(case, sizes):
    """Example shapes with each dynamic axis set to sizes[dim_name] (others unchanged)."""
    shapes = []
    for name, t in zip(case["input_names"], case["inputs"]):
        shape = list(t.shape)
        for axis, dim in case["dynamic_axes"].get(name, {}).items():
            if dim in sizes and axis < len(shape):
                shape[axis] = int(sizes[dim])
        shapes.append(tuple(shape))
    return shapes


def export_sizes(case):
    """Example sizes of the dynamic dims, raised to at least 2: torch.export specializes
    dims of size 0/1, and tracing at 1 hides broadcasting bugs."""
    sizes: Dict[str, int] = {}
    for name, t in zip(case["input_names"], case["inputs"]):
        for axis, dim in case["dynamic_axes"].get(name, {}).items():
            if axis < t.dim():
                sizes.setdefault(dim, max(2, int(t.shape[axis])))
    return sizes


MAX_ELEMENTS = 4000000  # a swept case bigger than this (all inputs) is left out: cost, not truth


def dim_sizes(case, sizes, limits, exact=False):
    """Sizes tried per dynamic dim: the spec's sizes, and above the export size: a sequence
    goes to 2x and 4x its export length, within a declared `max` or a found limit. `exact`
    (the user's --sizes): the spec's sizes alone, nothing added, none dropped here (sizes the
    model refuses are skipped and reported by envctl_smoke_domain)."""
    exp = export_sizes(case)
    out = {}
    for d in dim_names(case):
        if exact:
            out[d] = sorted({int(v) for v in sizes})
            continue
        cap = limits.get(d)
        vals = [int(v) for v in sizes if not cap or v <= cap]
        grow = (2, 4) if d != "batch" else ((2,) if max(vals or [0]) <= exp.get(d, 2) else ())
        for k in grow:
            v = exp.get(d, 2) * k
            v = min(v, cap) if cap else v
            if v not in vals:
                vals.append(v)
        out[d] = vals or [exp.get(d, 2)]
    return out


def within(per_dim, bounds, exact=False):
    """Each dim's sizes inside its accepted [low, high] (`bounds`, from envctl_smoke_domain):
    the user's exact sizes outside it are left out (and reported), generated ones are moved
    to the nearest accepted size, so the sweep still goes as low and as high as it can."""
    out = {}
    for d, vals in per_dim.items():
        low, high = (bounds or {}).get(d) or (1, None)
        inside = []
        for v in vals:
            if not exact:
                v = max(low, v) if high is None else min(max(low, v), high)
            if v >= low and (high is None or v <= high) and v not in inside:
                inside.append(v)
        out[d] = inside
    return out


def inside(sizes, bounds):
    """True when every dim of `sizes` ({dim: size}) lies in its accepted [low, high]."""
    for d, n in sizes.items():
        low, high = (bounds or {}).get(d) or (1, None)
        if n < low or (high is not None and n > high):
            return False
    return True


def sweep(case, sizes, limits=None, bounds=None, exact=False):
    """{dim_name: size} cases. Dims are rotated against each other (batch=list[i], next
    dim=list[i+1], ...) so every dim sees every size while batch and sequence differ,
    which catches axes swapped in a reshape. `bounds`: the model's accepted sizes per dim."""
    per = within(dim_sizes(case, sizes, limits or {}, exact), bounds, exact)
    dims = dim_names(case)
    if any(not per[d] for d in dims):  # a dim the model accepts none of the sizes on
        return []
    n = max([len(v) for v in per.values()] or [len(sizes)])
    cases = []
    for i in range(n):
        c = {d: per[d][(i + k) % len(per[d])] for k, d in enumerate(dims)}
        if c not in cases and sum(int(np.prod(s)) for s in input_shapes(case, c)) <= MAX_ELEMENTS:
            cases.append(c)
    return cases


def fingerprint_sizes(case, sizes, bounds=None, exact=False):
    """The one case whose ONNX outputs are fingerprinted, the same in every env: each dim at 2
    (its smallest accepted size above that), or with the user's --sizes, at the smallest of
    them the model accepts. None when some dim accepts none of them."""
    out = {}
    for d in dim_names(case):
        low, high = (bounds or {}).get(d) or (1, None)
        if exact:
            ok = [int(v) for v in sorted(sizes) if v >= low and (high is None or v <= high)]
            if not ok:
                return None
            out[d] = ok[0]
        else:
            out[d] = max(2, low) if high is None else min(max(2, low), high)
    return out


def make_inputs(case, dim_sizes, seed, group="random"):
    """Seeded inputs from each input's domain (envctl_smoke_inputs), as tensors."""
    import envctl_smoke_inputs as inputs  # here, so scripts/bare_export.py can load this file alone
    return inputs.make(case, input_shapes(case, dim_sizes), seed, group)


def _sample(value, case, where):
    """One sample (tuple of tensors or {input_name: tensor}) as a tuple in input order, cast
    to the example's dtypes."""
    names = case["input_names"]
    if isinstance(value, dict):
        missing = [n for n in names if n not in value]
        if missing:
            raise ModelError("%s: no %s (it has %s)" % (where, missing, sorted(value)))
        value = [value[n] for n in names]
    elif isinstance(value, (torch.Tensor, np.ndarray)):
        value = [value]
    value = list(value)
    if len(value) != len(names):
        raise ModelError("%s: %d tensors for %d inputs %s" % (where, len(value), len(names), names))
    out = []
    for v, ex, n in zip(value, case["inputs"], names):
        t = torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v
        if t.dim() != ex.dim():
            raise ModelError("%s: input %r has %d dims, the example %d" % (where, n, t.dim(), ex.dim()))
        out.append(t.detach().cpu().to(ex.dtype))
    return tuple(out)


def _limits():
    """The sibling envctl_smoke_limits (declared-size bounds), however this file was loaded."""
    if "envctl_smoke_limits" not in sys.modules:
        import importlib.util

        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "envctl_smoke_limits.py")
        spec = importlib.util.spec_from_file_location("envctl_smoke_limits", path)
        if spec is None or spec.loader is None:  # a .py path always has a spec and a loader
            raise ImportError("cannot load envctl_smoke_limits from %s" % path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["envctl_smoke_limits"] = module
    return sys.modules["envctl_smoke_limits"]


def load_samples(case, files):
    """The callable's `samples` and the --inputs files (.npz: one sample keyed by input name
    or arr_0..; .pt: a tuple/dict, or a list of them) as tuples of tensors."""
    samples = [_sample(v, case, "samples[%d]" % i) for i, v in enumerate(case.get("samples") or [])]
    for path in files or []:
        limits = _limits()
        try:
            limits.check_input_file(path)  # by declared sizes, before numpy or torch allocates anything
        except (limits.InputTooLarge, OSError) as exc:
            raise ModelError("--inputs %s" % exc) from None
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                positional = ["arr_%d" % i for i in range(len(case["input_names"]))]
                if not (set(case["input_names"]) <= set(keys) or set(positional) <= set(keys)):
                    raise ModelError("%s holds %s; name its arrays after the inputs %s (or arr_0, arr_1, ...)"
                                     % (path, keys, case["input_names"]))
                value = ({k: z[k] for k in keys} if set(case["input_names"]) <= set(keys)
                         else [z[k] for k in positional])
            samples.append(_sample(value, case, path))
        else:
            value = torch.load(path, map_location="cpu", weights_only=True)
            many = isinstance(value, list) and value and isinstance(value[0], (tuple, list, dict))
            for i, v in enumerate(value if many else [value]):
                samples.append(_sample(v, case, "%s[%d]" % (path, i) if many else path))
    return samples


def add_model_paths(paths):
    """Prepend the spec's model_paths (first entry wins) so user modules import."""
    for p in reversed(list(paths or [])):
        if p not in sys.path:
            sys.path.insert(0, p)
