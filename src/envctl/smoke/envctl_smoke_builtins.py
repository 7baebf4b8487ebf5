"""The built-in smoke models' names: the one list, read by the runner (a sibling
import inside the target env) and by envctl on the host (envctl.smoke.BUILTIN_MODELS).
Standard library only: the host imports it without torch."""

BUILTIN_NAMES = ("cnn", "transformer", "rnn")
