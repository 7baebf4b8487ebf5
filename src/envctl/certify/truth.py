"""Host-side pieces that keep a certificate truthful (issue 11).

- which models `certify --target host` certifies (the matrix's, user models included);
- `--inputs` files checked before anything runs;
- a crash or a dead runner on a full disk / out of memory / too many files is
  `resource_exhausted` (naming the path), not `runner_crash`;
- the runner's measured ONNX Runtime limits (highest opset and IR it loads) compared
  with what the rules claim for that release: a disagreement is a finding naming the rule.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

from envctl.core.errors import EnvctlError
from envctl.smoke import BUILTIN_MODELS as BUILTINS
from envctl.smoke.envctl_smoke_limits import MAX_INPUT_BYTES, InputTooLarge, check_input_file
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
RESOURCE = re.compile(r"No space left on device|ENOSPC|\[Errno 28\]|Cannot allocate memory|ENOMEM|\[Errno 12\]"
                      r"|MemoryError|std::bad_alloc|Too many open files|EMFILE|\[Errno 24\]|Disk quota exceeded")
RESOURCE_ERRNOS = {errno.ENOSPC, errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.EDQUOT}
# what the rules call these facts (src/envctl/rules/ruleset.py)
LIMIT_RULES = {"max_opset": "ort-max-opset", "max_ir": "ort-max-ir"}


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text or "")


def host_models(matrix) -> list[str]:
    """Every model the matrix's targets name (built-ins first, then user models in matrix
    order): a loaded Matrix, or a path. No matrix (file): the built-ins. A matrix that does
    not load is refused."""
    if matrix is None or (isinstance(matrix, (str, Path)) and not Path(matrix).exists()):
        return list(BUILTINS)
    if isinstance(matrix, (str, Path)):
        from envctl.matrix.loader import load_matrix

        matrix = load_matrix(Path(matrix))  # raises EnvctlError naming file/line on bad input
    seen: list[str] = []
    for target in matrix.targets.values():
        for model in target.models:
            if model not in seen:
                seen.append(model)
    return [m for m in BUILTINS if m in seen] + [m for m in seen if m not in BUILTINS] or list(BUILTINS)


def input_files(paths: list[Path] | tuple = ()) -> list[str]:
    """--inputs FILE (repeatable): existing .npz or .pt files, as absolute paths."""
    out = []
    for p in paths or ():
        path = Path(p)
        if path.suffix not in (".npz", ".pt"):
            raise EnvctlError(f"--inputs {p}: expected a .npz or .pt file", key="--inputs")
        if not path.is_file():
            raise EnvctlError(f"--inputs {p}: no such file", key="--inputs")
        try:
            check_input_file(str(path))  # declared sizes, before anything is built or loaded
        except (InputTooLarge, OSError) as exc:
            raise EnvctlError(f"--inputs {exc}", key="--inputs",
                              hint=f"--inputs takes .npz (numpy.savez) or .pt (torch.save) files of at most {MAX_INPUT_BYTES >> 20} MiB "
                                   "each, counted by what they declare once unpacked.") from None
        out.append(str(path.resolve()))
    return out


def resource_failure(text: str, remedy: str) -> dict | None:
    """resource_exhausted from a dead runner's output, naming the path it mentions."""
    text = strip_ansi(text)
    m = RESOURCE.search(text)
    if not m:
        return None
    line = next((l for l in text.splitlines() if m.group(0) in l), m.group(0)).strip()
    return {"class": "resource_exhausted", "stage": "runner", "message": line[-500:], "remedy": remedy}


def oserror_failure(exc: OSError, remedy: str) -> dict | None:
    """resource_exhausted for the host's own writes (spec, temp folder) that hit a limit."""
    if exc.errno not in RESOURCE_ERRNOS:
        return None
    import tempfile

    where = exc.filename or f"the temporary folder {tempfile.gettempdir()} (TMPDIR)"
    return {"class": "resource_exhausted", "stage": "runner",
            "message": f"{exc.strerror or exc} at {where}", "remedy": remedy}


def limit_findings(versions: dict | None, measured: dict | None) -> list[dict]:
    """Where the measured ORT limits disagree with facts.ORT_MAX_OPSET / ORT_MAX_IR."""
    from envctl.rules import facts as F

    ort = (versions or {}).get("onnxruntime")
    if not ort or not measured:
        return []
    line = ".".join(str(ort).split("+")[0].split(".")[:2])
    out = []
    for key, table in (("max_opset", F.ORT_MAX_OPSET), ("max_ir", F.ORT_MAX_IR)):
        fact, value = table.get(line), measured.get(key)
        if fact is None or value is None:
            continue
        if fact.value != value:
            out.append({"rule": LIMIT_RULES[key], "onnxruntime": ort, "claimed": fact.value, "measured": value,
                        "source": fact.source,
                        "message": f"rule {LIMIT_RULES[key]} says onnxruntime {line} loads {key.split('_')[1]} up to "
                                   f"{fact.value}; this env's onnxruntime {ort} loads up to {value}"})
    return out
