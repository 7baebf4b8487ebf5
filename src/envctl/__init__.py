"""envctl: checked, reproducible environments for the PyTorch -> ONNX export path."""

__version__ = "0.1.0"
