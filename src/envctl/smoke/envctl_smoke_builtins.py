"""The built-in smoke models' names: the one list, read by the runner (a sibling
import inside the target env) and by envctl on the host (envctl.smoke.BUILTIN_MODELS:
matrix validation, `certify --target host`, `envctl export`, the matrix field's help).
Standard library only: the host imports it without torch.

A new built-in takes two files: its name here and its builder in envctl_smoke_models.py
(`@builtin("name")`). A name here without a builder fails its run as a model_error naming it.
"""

BUILTIN_NAMES = ("cnn", "transformer", "rnn")
