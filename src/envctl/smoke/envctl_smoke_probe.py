"""Measured limits of the env's ONNX Runtime: the highest opset and IR version it loads.

Tiny one-node models (Identity) built with onnx.helper, each opened in an ORT session; the
host compares the results with what the rules claim for that onnxruntime release.
Imports: standard library, onnx, onnxruntime. Loaded by path by the runner.
"""


def _loads(opset, ir):
    import onnxruntime as ort
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "envctl_probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return True, None
    except Exception as e:
        return False, " ".join(str(e).split())[-200:] or type(e).__name__


def _highest(try_one, top, bottom):
    """Scan down from `top`: the first value that loads, and why the one above it did not."""
    why = None
    for value in range(top, bottom - 1, -1):
        ok, err = try_one(value)
        if ok:
            return value, why
        why = err
    return None, why


def limits_stage(details):
    """details: max_opset, max_ir (None where nothing loaded) and ORT's refusal one above."""
    import onnx
    top_opset = onnx.defs.onnx_opset_version() + 3
    top_ir = onnx.IR_VERSION + 3
    # IR 8 is what ORT has read for years; opset 7 every release has; each probe varies one.
    max_ir, ir_why = _highest(lambda ir: _loads(7, ir), top_ir, 3)
    ir_for_opsets = max_ir or 8
    max_opset, opset_why = _highest(lambda o: _loads(o, ir_for_opsets), top_opset, 7)
    details.update(max_opset=max_opset, max_ir=max_ir, refused_opset_above=opset_why, refused_ir_above=ir_why,
                   method="Identity models built with onnx.helper, opened on CPUExecutionProvider")
