"""envctl: checked, reproducible environments for the PyTorch -> ONNX export path."""

import sys

__version__ = "0.1.0"

if sys.version_info < (3, 10):  # kept parseable by old Pythons, so they get this and not a SyntaxError
    raise SystemExit(
        "envctl needs Python 3.10 or newer; this is Python %d.%d (a Jetson on JetPack 5 has 3.8).\n"
        "On such a device, install the env without envctl: on a machine that runs envctl, "
        "`envctl pack --target TARGET --out TARGET.sh`; copy TARGET.sh here and run "
        "`sh TARGET.sh --prefix DIR` (add --certify to certify it on this device)." % sys.version_info[:2])
