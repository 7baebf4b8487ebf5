"""The smoke export-and-infer without envctl: the baseline `scripts/bench` times certify against.

Same work as the smoke runner's ladder for each model and exporter: build the
model (the same three built-in architectures, seeded the same way), run it in
PyTorch at the export sizes, torch.onnx.export (TorchScript with dynamic_axes,
dynamo with dynamic_shapes), onnx.checker (full_check), an ONNX Runtime
session, then every size of the sweep plus the all-2 case through PyTorch and
ORT, compared with numpy (atol/rtol as allclose). Nothing else: no version
probe, no result file, no classification, no certificate.

    <env>/bin/python -I scripts/bare_export.py [--opset 18] [--exporters torchscript,dynamo]
                                                 [--sizes 1,2,5] [--models cnn,transformer,rnn]

Imports only torch, onnx, onnxruntime and numpy; prints one JSON line with
the seconds it took (from the first import to the end) and what it checked.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time

T0 = time.perf_counter()

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402


class SmokeCNN(nn.Module):
    def __init__(self, width=8, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head_weight = nn.Parameter(torch.empty(classes, 2 * width))
        self.head_bias = nn.Parameter(torch.empty(classes))

    def forward(self, x):
        x = self.stem(x)
        y = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(x + self.bn2(self.conv2(y)))
        x = torch.flatten(self.pool(F.relu(self.down(x))), 1)
        return x @ self.head_weight.t() + self.head_bias


class SmokeTransformerBlock(nn.Module):
    def __init__(self, dim=32, heads=4, hidden=64):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.ln1 = nn.LayerNorm(dim)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        b, s, d = x.shape
        y = self.ln1(x)
        q, k, v = (p(y).reshape(b, s, self.heads, self.head_dim).transpose(1, 2) for p in (self.q, self.k, self.v))
        att = torch.softmax((q @ k.transpose(-2, -1)) * (self.head_dim ** -0.5), dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, s, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class SmokeRNN(nn.Module):
    def __init__(self, features=8, hidden=16, out=4):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, out)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y)


def seeded(module, seed):
    rng = np.random.RandomState(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if not t.is_floating_point():
                continue
            shape = tuple(t.shape)
            if name.endswith("running_var"):
                arr = rng.uniform(0.5, 1.5, shape)
            elif len(shape) >= 2:
                bound = 1.0 / math.sqrt(max(1, int(np.prod(shape[1:]))))
                arr = rng.uniform(-bound, bound, shape)
            elif name.endswith("weight"):
                arr = 1.0 + 0.1 * rng.standard_normal(shape)
            else:
                arr = 0.1 * rng.standard_normal(shape)
            t.copy_(torch.from_numpy(np.asarray(arr, dtype=np.float32)))
    return module.eval()


# name -> (model, example input shape, dynamic dims of the input and the output: {axis: name})
MODELS = {
    "cnn": (SmokeCNN, (1, 3, 32, 32), {0: "batch"}),
    "transformer": (SmokeTransformerBlock, (2, 6, 32), {0: "batch", 1: "seq"}),
    "rnn": (SmokeRNN, (2, 6, 8), {0: "batch", 1: "seq"}),
}


def inputs_for(shape, axes, sizes, seed, index):
    shape = list(shape)
    for axis, dim in axes.items():
        shape[axis] = sizes[dim]
    rng = np.random.RandomState((seed * 1000003 + index * 7919 + sum(shape)) % 2**32)
    return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))


def sweep(dims, sizes):
    """One {dim: size} per size, dims rotated against each other, plus the all-2 case."""
    cases = [{d: int(sizes[(i + k) % len(sizes)]) for k, d in enumerate(dims)} for i in range(len(sizes))]
    all2 = {d: 2 for d in dims}
    return cases + ([all2] if all2 not in cases else [])


def export(model, x, path, exporter, opset, axes):
    kw = dict(input_names=["x"], output_names=["y"], opset_version=opset, do_constant_folding=True)
    if exporter == "torchscript":
        kw.update(dynamo=False, dynamic_axes={"x": dict(axes), "y": dict(axes)})
    else:
        from torch.export import Dim

        kw.update(dynamo=True, verbose=False, external_data=False,
                  dynamic_shapes=({a: Dim(d) for a, d in axes.items()},))
    torch.onnx.export(model, (x,), path, **kw)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--exporters", default="torchscript,dynamo")
    parser.add_argument("--sizes", default="1,2,5")
    parser.add_argument("--models", default="cnn,transformer,rnn")
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--rtol", type=float, default=1e-3)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    checked, worst = 0, 0.0
    with tempfile.TemporaryDirectory(prefix="bare-export-") as tmp:
        for name in args.models.split(","):
            cls, shape, axes = MODELS[name]
            torch.manual_seed(0)
            model = seeded(cls(), 0)
            dims = list(dict.fromkeys(axes.values()))
            export_sizes = {d: max(2, shape[a]) for a, d in axes.items()}
            x = inputs_for(shape, axes, export_sizes, 0, 0)
            with torch.no_grad():
                model(x)  # the runner's pre-export forward
            refs = {}
            for exporter in args.exporters.split(","):
                path = os.path.join(tmp, f"{name}-{exporter}.onnx")
                export(model, x, path, exporter, args.opset, axes)
                onnx.checker.check_model(path, full_check=True)
                sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                feed_name = sess.get_inputs()[0].name
                for i, case in enumerate(sweep(dims, sizes)):
                    xi = inputs_for(shape, axes, case, 0, i)
                    key = json.dumps(case, sort_keys=True)
                    if key not in refs:
                        with torch.no_grad():
                            refs[key] = model(xi).numpy()
                    (got,) = sess.run(None, {feed_name: xi.numpy()})
                    ref = refs[key]
                    if got.shape != ref.shape or not np.allclose(got, ref, atol=args.atol, rtol=args.rtol):
                        print(json.dumps({"ok": False, "model": name, "exporter": exporter, "case": case}))
                        return 1
                    worst = max(worst, float(np.abs(got.astype(np.float64) - ref).max()))
                    checked += 1
    print(json.dumps({"ok": True, "seconds": round(time.perf_counter() - T0, 3), "checked": checked,
                      "max_abs": worst, "torch": torch.__version__, "onnxruntime": ort.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
