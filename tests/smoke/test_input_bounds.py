"""--inputs files are bounded by what they declare, before numpy or torch allocates anything.

A small .npz whose .npy header claims a huge shape, or whose entry inflates
far past its compressed size, must be refused with the file and the limit
named: by `envctl certify` on the host before anything is built, and by the
smoke runner itself (its own process, under a memory limit far below what
loading the file would take).
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from envctl.smoke.envctl_smoke_limits import MAX_INPUT_BYTES, InputTooLarge, check_input_file

SMOKE_DIR = Path(__file__).resolve().parents[2] / "src" / "envctl" / "smoke"


def npy_header(shape: tuple, descr: object = "<f4") -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape})
    pad = 64 - (10 + len(header) + 1) % 64
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header) + pad + 1) + (header + " " * pad + "\n").encode()


def write_npz(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def zeros_npy(shape: tuple, dtype=np.uint8) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros(shape, dtype))
    return buf.getvalue()


def hostile(tmp_path: Path) -> dict[str, Path]:
    return {
        "header-lies-about-shape": write_npz(tmp_path / "lie.npz", {"x.npy": npy_header((40000, 40000)) + b"\0" * 64}),
        "structured-dtype-lie": write_npz(tmp_path / "rec.npz", {"x.npy": npy_header((10**6,), [("a", "<f8", (1000,))])}),
        "unicode-dtype-lie": write_npz(tmp_path / "uni.npz", {"x.npy": npy_header((10**5,), "<U100000")}),
        "zeros-inflate": write_npz(tmp_path / "bomb.npz", {"x.npy": zeros_npy((17000, 17000))}),
        "many-entries": write_npz(tmp_path / "many.npz", {f"arr_{i}.npy": zeros_npy((3000, 3000)) for i in range(30)}),
        "negative-shape": write_npz(tmp_path / "neg.npz", {"x.npy": npy_header((-1, 5))}),
        "not-a-zip": tmp_path / "plain.npz",
        "pt-inflate": write_npz(tmp_path / "big.pt", {"archive/data/0": b"\0" * (MAX_INPUT_BYTES + 1)}),
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    found = hostile(tmp_path_factory.mktemp("inputs"))
    found["not-a-zip"].write_bytes(b"\x93NUMPY not a zip")
    return found


def test_honest_inputs_pass(tmp_path):
    np.savez(tmp_path / "ok.npz", x=np.ones((8, 3, 32, 32), np.float32), arr_1=np.arange(10))
    check_input_file(str(tmp_path / "ok.npz"))


KINDS = ["header-lies-about-shape", "structured-dtype-lie", "unicode-dtype-lie", "zeros-inflate", "many-entries",
         "negative-shape", "not-a-zip", "pt-inflate"]


@pytest.mark.parametrize("kind", KINDS)
def test_declared_sizes_are_refused_before_loading(files, kind):
    assert os.path.getsize(files[kind]) < 2 << 20  # each is small on disk
    with pytest.raises(InputTooLarge, match=str(files[kind].name)):
        check_input_file(str(files[kind]))


@pytest.mark.parametrize("kind", ["header-lies-about-shape", "zeros-inflate", "not-a-zip"])
def test_certify_refuses_them_on_the_host_before_building(files, kind, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    workdir = tmp_path / "work"
    workdir.mkdir()
    done = subprocess.run([sys.executable, "-m", "envctl", "certify", "--target", "host", "--inputs", str(files[kind])],
                          cwd=workdir, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and files[kind].name in done.stderr and "--inputs" in done.stderr


RUNNER_SIDE = """\
import importlib.util, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # loading any of these would need far more
folder = sys.argv[1]
for name in ("envctl_smoke_builtins", "envctl_smoke_limits", "envctl_smoke_models"):
    spec = importlib.util.spec_from_file_location(name, f"{folder}/{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
import torch
case = {"input_names": ["x"], "inputs": (torch.zeros(2, 3),)}
for path in sys.argv[2:]:
    try:
        module.load_samples(case, [path])
    except module.ModelError as exc:
        print("refused:", exc)
    else:
        print("loaded:", path)
"""


def test_the_runner_refuses_them_itself(files, tmp_path):
    """The runner's own loading (stdlib + numpy + torch, no envctl), under a 3 GiB address-space limit."""
    kinds = ["header-lies-about-shape", "structured-dtype-lie", "zeros-inflate", "many-entries"]
    done = subprocess.run([sys.executable, "-I", "-c", RUNNER_SIDE, str(SMOKE_DIR), *(str(files[k]) for k in kinds)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == len(kinds) and all(line.startswith("refused: --inputs") for line in lines), done.stdout
    assert all("MiB" in line or "declares" in line for line in lines)
