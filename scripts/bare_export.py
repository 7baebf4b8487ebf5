"""The smoke export-and-infer without envctl: the baseline `scripts/bench` times certify against.

Same work as the smoke runner's ladder for each model and exporter: build the
model (the same three built-in architectures, seeded the same way), run it in
PyTorch at the export sizes, torch.onnx.export (TorchScript with dynamic_axes,
dynamo with dynamic_shapes), onnx.checker (full_check), an ONNX Runtime
session, then each case through PyTorch and ORT, compared with numpy
(atol/rtol as allclose). Nothing else: no version probe, no result file, no
classification, no certificate.

The cases: with --cases FILE, exactly the input sizes envctl's runner compared
for each model and exporter (scripts/bench writes FILE from the certificate or
the `envctl export --json` report of the same work, so both sides run the same
number of PyTorch and ONNX Runtime passes at the same shapes; values are
random, which costs these models the same). Without it, every size of the
sweep plus the all-2 case.

    <env>/bin/python -I scripts/bare_export.py [--opset 18] [--exporters torchscript,dynamo]
                                                 [--sizes 1,2,5] [--models cnn,transformer,rnn] [--cases FILE]

Imports only torch, onnx, onnxruntime and numpy; prints one JSON line with
the seconds it took (from the first import to the end) and what it checked.
"""

import argparse
import json
import os
import sys
import tempfile
import time

T0 = time.perf_counter()

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402


def _load_models():
    """The built-in architectures and their seeded init, by file path from the smoke runner's
    standalone models module (stdlib + torch + numpy): the baseline exports the very same
    models, without any of envctl's pipeline."""
    import importlib.util

    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src", "envctl", "smoke")
    module = None
    for name in ("envctl_smoke_builtins", "envctl_smoke_limits", "envctl_smoke_models"):  # the models module imports the names
        spec = importlib.util.spec_from_file_location(name, os.path.join(folder, name + ".py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


_M = _load_models()


def seeded(module, seed):
    return _M.deterministic_init(module, seed).eval()


def _registry():
    """name -> (model class, example input shape, dynamic dims of the input and the output: {axis: name}),
    from the runner's own registry of built-ins (envctl_smoke_models.BUILDERS), so a new one is here too."""
    out = {}
    for name, build in _M.BUILDERS.items():
        model, example, axes, (inputs, _) = build()
        out[name] = (type(model), tuple(example.shape), axes[inputs[0]])
    return out


MODELS = _registry()


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


def planned_cases(cases, name, exporter, dims, sizes):
    """[(key, {dim: size})]: the runner's cases for this model and exporter (--cases), else the sweep.
    The key names one PyTorch reference, shared by the exporters as the runner shares it."""
    if cases is None:
        return [(json.dumps(case, sort_keys=True), case) for case in sweep(dims, sizes)]
    planned = cases.get("%s/%s" % (name, exporter))
    if planned is None:
        raise SystemExit("--cases has no entry %s/%s" % (name, exporter))
    out = []
    for i, case in enumerate(planned):
        if set(case) != set(dims):
            raise SystemExit("--cases %s/%s #%d names %s; the model's dims are %s" % (name, exporter, i, sorted(case), dims))
        out.append(("%d:%s" % (i, json.dumps(case, sort_keys=True)), {d: int(case[d]) for d in dims}))
    return out


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
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--cases", help="JSON {\"model/exporter\": [{dim: size}, ...]}: the cases to run")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    cases = None
    if args.cases:
        with open(args.cases, encoding="utf-8") as handle:
            cases = json.load(handle)
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
                for i, (key, case) in enumerate(planned_cases(cases, name, exporter, dims, sizes)):
                    xi = inputs_for(shape, axes, case, 0, i)
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
