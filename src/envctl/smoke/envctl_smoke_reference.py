"""PyTorch as a reference for the envctl smoke runner: is PyTorch itself a fixed answer
(the same inputs twice give the same outputs), and what does it compute in float64
(float32's own error, against which the ONNX difference is judged).

Imports: standard library, torch, numpy. Loaded by path by the runner.
"""
import copy
import inspect
import os
import re
from typing import Any, List, Tuple

import numpy as np
import torch
from envctl_smoke_domain import eager, tensors_in  # sibling: the one eager call, the one walk over outputs

# ONNX may be this many times as far from the float64 answer as float32 PyTorch is (plus
# atol + rtol*|ref|) and still count as right: two float32 computations of the same sum in
# another order each carry float32's error, so their distances to float64 add up to twice it.
PRECISION_FACTOR = 2.0
_DROPOUT_CALL = re.compile(r"\bdropout\w*\s*\(|\balpha_dropout\s*\(|\bbernoulli_?\s*\(|\brand(n|int|_like|n_like)?\s*\(")


def _run(model, tensors):
    return [t.detach().cpu().numpy() for t in tensors_in(eager(model, tensors))]


def float64_outputs(case, tensors, device):
    """PyTorch's outputs in float64 on the same inputs (integer inputs stay integer), from a
    deep copy of the model cast with .double(); (outputs, None) or (None, why not)."""
    if "_model64" not in case:
        try:
            case["_model64"] = copy.deepcopy(case["model"]).double().eval(), None
        except Exception as e:  # a model that cannot be copied or cast
            case["_model64"] = None, "the model cannot be cast to float64 (%s: %s)" % (type(e).__name__, str(e)[:200])
    model, why = case["_model64"]
    if model is None:
        return None, why
    try:
        cast = [t.to(device).double() if t.is_floating_point() else t.to(device) for t in tensors]
        return _run(model, cast), None
    except Exception as e:  # an op without a float64 kernel, a dtype check in forward
        return None, "PyTorch fails in float64 (%s: %s)" % (type(e).__name__, str(e).splitlines()[0][:200])


def _disagree(a, b, atol, rtol):
    if len(a) != len(b):
        return True
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return True
        if x.dtype.kind in "fc":
            if not np.allclose(x, y, atol=atol, rtol=rtol, equal_nan=True):
                return True
        elif not np.array_equal(x, y):
            return True
    return False


def _summary(value):
    """Fingerprint of a module's inputs or outputs: enough to tell two runs apart."""
    out: List[Tuple[Any, ...]] = []
    for t in tensors_in(value):
        if t.is_floating_point() or t.is_complex():
            f = t.detach().double()
            w = torch.arange(1, f.numel() + 1, dtype=torch.float64, device=f.device).reshape(f.shape) if f.numel() else f
            out.append((tuple(t.shape), float(torch.nan_to_num(f).sum()), float(torch.nan_to_num(f * w).sum())))
        else:
            out.append((tuple(t.shape), float(t.detach().double().sum())))
    return out


def _calls(model, tensors, names):
    """(name, class, inputs' fingerprint, outputs' fingerprint) of every module call, in the
    order the calls finish (innermost first)."""
    calls, hooks = [], []

    def hook(module, args, output):
        calls.append((names.get(id(module), "?"), type(module).__name__, _summary(args), _summary(output)))
    for m in model.modules():
        hooks.append(m.register_forward_hook(hook))
    try:
        eager(model, tensors)
    finally:
        for h in hooks:
            h.remove()
    return calls


def _culprit(model, tensors, tries=6):
    """The innermost module whose output differs between two runs although its inputs do
    not (the random op lives in its own forward), as (qualified name, class name). A random
    op may draw the same numbers twice by chance (dropout on a few units): several tries."""
    names = {id(m): n for n, m in model.named_modules()}
    base = _calls(model, tensors, names)
    for _ in range(tries):
        for a, b in zip(base, _calls(model, tensors, names)):
            if a[:3] == b[:3] and a[3] != b[3]:
                return a[0] or "the model itself", a[1]
    return None


def _random_lines(module_class):
    """file:line of calls in the class's forward that draw random numbers (dropout without
    training=self.training, rand*, bernoulli)."""
    try:
        lines, first = inspect.getsourcelines(module_class.forward)
        path = inspect.getsourcefile(module_class.forward)
    except (TypeError, OSError):
        return []
    out = []
    for i, text in enumerate(lines):
        code = text.split("#", 1)[0]
        if _DROPOUT_CALL.search(code) and "training" not in code:
            out.append("%s:%d" % (os.path.basename(path or "?"), first + i))
    return out


def nondeterminism(model, tensors, first, atol, rtol):
    """None when PyTorch gives the same outputs (`first`) again on the same inputs; else the
    message of a nondeterministic_model failure, naming the module and line where found."""
    for _ in range(2):  # twice: a random op on a few units may draw the same numbers once by chance
        again = _run(model, tensors)
        if _disagree(first, again, atol, rtol):
            break
    else:
        return None
    worst = max((float(np.nanmax(np.abs(x.astype(np.float64) - y.astype(np.float64))))
                 for x, y in zip(first, again) if x.shape == y.shape and x.size and x.dtype.kind in "fc"),
                default=float("nan"))
    text = "PyTorch gives different outputs for the same inputs twice in eval mode (max difference %.3g)" % worst
    found = _culprit(model, tensors)
    if found:
        name, klass = found
        module = dict(model.named_modules()).get(name, model)
        sites = _random_lines(type(module))
        text += ": the difference starts in module %r (%s)%s" % (
            name, klass, ", random draws at " + ", ".join(sites) if sites else "")
    return text
