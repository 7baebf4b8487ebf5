"""`runner_labels:` on a target: validated like every field, chooses CI runners, never changes the target's hash."""

from __future__ import annotations

import yaml

from test_ci import INSTALL, cpu, cuda, generate, runner
from envctl.cli import app


def test_runner_labels_choose_the_runner_per_target_and_platform(tmp_path):
    path = tmp_path / "envs" / "matrix.yaml"
    path.parent.mkdir()
    targets = {"cu118": cuda(["linux-64"], cuda="11.8", runner_labels=["self-hosted", "gpu-cuda11"]),
               "cu12": cuda(["linux-64", "win-64"], runner_labels={"linux-64": ["self-hosted", "a100"],
                                                                   "win-64": ["self-hosted", "Windows", "rtx"]}),
               "jetson": cuda(["linux-aarch64"], cuda="11.8", runner_labels="orin"),
               "cu13": cuda(["linux-64"], cuda="13.0")}  # no labels: --gpu-label, else lock-only
    path.write_text(yaml.safe_dump({"version": 1, "targets": targets}))
    for extra, cu13 in (((), ("ubuntu-latest", "lock-only")),
                        (("--gpu-label", "gpu"), (["self-hosted", "Linux", "X64", "gpu"], "run"))):
        _, doc = generate(path, *extra)
        rows = {(e["target"], e["platform"]): (e["runner"], e["mode"])
                for e in doc["jobs"]["certify"]["strategy"]["matrix"]["include"]}
        assert rows == {("cu118", "linux-64"): (["self-hosted", "gpu-cuda11"], "run"),
                        ("cu12", "linux-64"): (["self-hosted", "a100"], "run"),
                        ("cu12", "win-64"): (["self-hosted", "Windows", "rtx"], "run"),
                        ("jetson", "linux-aarch64"): (["orin"], "run"),
                        ("cu13", "linux-64"): cu13}


def test_runner_labels_are_validated_with_file_and_line(tmp_path):
    path = tmp_path / "envs" / "matrix.yaml"
    path.parent.mkdir()
    for bad, needle in ((["ok", "no spaces"], "not allowed"), ({"linux-65": ["x"]}, "linux-65"),
                        ([], "non-empty"), ({"linux-64": ["a;b"]}, "not allowed"), (["x", "x"], "duplicates"),
                        ({"win-64": ["x"]}, "none of them a platform of target 'a'")):
        text = yaml.safe_dump({"version": 1, "targets": {"a": cpu(["linux-64"], runner_labels=bad)}})
        path.write_text(text)
        result = runner.invoke(app, ["ci", "github", "--matrix", str(path), "--out", "-", *INSTALL])
        line = 1 + next(i for i, l in enumerate(text.splitlines()) if l.strip().startswith("runner_labels"))
        assert result.exit_code == 2 and needle in result.output and "Traceback" not in result.output
        assert f"matrix.yaml:{line}" in " ".join(result.output.split()), result.output


def test_runner_labels_do_not_change_the_definition_hash(tmp_path):
    from envctl.matrix.loader import load_matrix

    path = tmp_path / "m.yaml"
    hashes = []
    for extra in ({}, {"runner_labels": ["gpu"]}, {"runner_labels": {"linux-64": ["a", "b"]}}):
        path.write_text(yaml.safe_dump({"version": 1, "targets": {"a": cpu(["linux-64"], **extra)}}))
        target = load_matrix(path).targets["a"]
        hashes.append(target.definition_hash())
    assert len(set(hashes)) == 1
    assert target.labels_for("linux-64") == ("a", "b") and target.labels_for("win-64") == ()
