"""Read a certificate for display (status, report --html): one reader that checks its shape.

A certificate is a file in the project that anyone can edit or break; the
readers walk it deeply (lock.sha256[:16], runs[].stages[].name, ...). A field
of the wrong type (`"lock": []`, `"stages": "x"`) is reported as a broken
certificate instead of crashing the command that shows it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import EnvctlError
from .limits import MAX_JSON_BYTES, read_text, short

# field -> allowed types (None allowed everywhere it is listed with type(None)).
_TOP = {"result": (str,), "certified": (str, type(None)), "created_at": (str, type(None)), "reason": (str, type(None)),
        "host": (dict, type(None)), "lock": (dict, type(None)), "spec": (dict, type(None)), "failure": (dict, type(None)),
        "runs": (list, type(None)), "versions": (dict, type(None)), "versions_expected": (dict, type(None)),
        "runner": (dict, type(None)), "seconds": (int, float, type(None)), "xfail": (str, type(None)),
        "target": (str, type(None))}
_TEXT = (str, type(None))
_NUM = (int, float, type(None))
_LOCK = {"path": _TEXT, "sha256": _TEXT}
_FAILURE = {"class": _TEXT, "stage": _TEXT, "message": _TEXT, "remedy": _TEXT}
_RUN = {"model": _TEXT, "exporter": _TEXT, "status": _TEXT, "failure": (dict, type(None)), "stages": (list, type(None)),
        "worst": (dict, type(None))}
_STAGE = {"name": _TEXT, "status": _TEXT, "message": _TEXT, "seconds": _NUM}


def _check(where: str, data: Any, fields: dict[str, tuple]) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"'{where}' is {type(data).__name__}, not a mapping")
    for key, types in fields.items():
        if key in data and not isinstance(data[key], types):
            raise ValueError(f"'{where + '.' if where else ''}{key}' is {short(data[key], 60)}, "
                             f"not {' or '.join(t.__name__ for t in types if t is not type(None))}")


def shape_problem(data: Any) -> str | None:
    """Why `data` is not a certificate status and the report can show, or None."""
    try:
        _check("", data, _TOP)
        if "result" not in data:
            raise ValueError("no 'result'")
        if data.get("lock") is not None:
            _check("lock", data["lock"], _LOCK)
        if data.get("failure") is not None:
            _check("failure", data["failure"], _FAILURE)
        for i, run in enumerate(data.get("runs") or []):
            _check(f"runs[{i}]", run, _RUN)
            if run.get("failure") is not None:
                _check(f"runs[{i}].failure", run["failure"], _FAILURE)
            for j, stage in enumerate(run.get("stages") or []):
                _check(f"runs[{i}].stages[{j}]", stage, _STAGE)
        spec = data.get("spec") or {}
        for key in ("exporters", "providers", "models"):
            if not isinstance(spec.get(key) or [], list) or not all(isinstance(v, str) for v in spec.get(key) or []):
                raise ValueError(f"'spec.{key}' is not a list of names")
        runner = data.get("runner") or {}
        stages = runner.get("stages") or []
        if not isinstance(stages, list):
            raise ValueError("'runner.stages' is not a list")
        for j, stage in enumerate(stages):
            _check(f"runner.stages[{j}]", stage, _STAGE)
        nvidia = (data.get("host") or {}).get("nvidia") or {}
        if not isinstance(nvidia, dict) or not isinstance(nvidia.get("gpus") or [], list) \
                or not all(isinstance(g, dict) and isinstance(g.get("name", ""), str) for g in nvidia.get("gpus") or []):
            raise ValueError("'host.nvidia' is not a mapping with a list of GPUs")
    except ValueError as exc:
        return str(exc)
    return None


def read_cert(path: Path) -> tuple[dict | None, str]:
    """(certificate, "") or (None, why it cannot be shown)."""
    try:
        data = json.loads(read_text(Path(path), MAX_JSON_BYTES, "certificate"))
    except EnvctlError as exc:
        if exc.message == "file not found":
            return None, f"no certificate at {path}"
        return None, f"unreadable certificate {path}: {exc.message}"
    except ValueError as exc:
        return None, f"unreadable certificate {path}: {short(str(exc), 200)}"
    if not isinstance(data, dict) or "result" not in data:
        return None, f"{path} is not an envctl certificate"
    problem = shape_problem(data)
    if problem:
        return None, f"{path} is a broken certificate: {problem}"
    return data, ""
