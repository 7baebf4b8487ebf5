"""`envctl report --html`: the matrix grid, from certificates made for real.

The page is opened in headless Chromium (Debian's `chromium` package): the
dumped DOM must hold the grid with one row per target and one cell per stage
and model x exporter, each with its state's class, and a screenshot must come
out. Without chromium those two tests are skipped; the rest still run.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envctl.cli import app
from envctl.host.platform import host_platform
from support import team_models
from support.project import pip_target, write_project
from support.shared import OLD_RUNTIME, shared_targets

runner = CliRunner()
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed (apt-get install chromium)")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(host_platform() != "linux-64", reason="the local channel's real python is linux-64 only"),
]
EVIL = '<script>alert("x")</script> & co'
TARGETS = ["good", "bad", "old-runtime", "arm", "later"]
TEAM_MODELS = team_models.SOURCE


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def report(shared_project, old_runtime_certified, local_channel) -> Path:
    # In the session's shared project, where old-runtime (xfail: opset 20 fails at the session stage
    # on onnxruntime 1.16) is built and certified once for every module that needs it.
    root, _ = shared_project
    assert old_runtime_certified[0] == 1
    matrix = write_project(root, {
        "good": pip_target(local_channel, models=["cnn"], exporters=["torchscript", "dynamo"]),
        "bad": pip_target(local_channel, models=["teammodels:branchy"]),  # a batch size frozen by a shape branch, not expected
        OLD_RUNTIME: shared_targets(local_channel)[OLD_RUNTIME],
        "arm": pip_target(local_channel, models=["cnn"], platforms=["linux-aarch64"]),  # lock-only here, never locked
        "later": pip_target(local_channel, models=["cnn"], description=EVIL),  # never built
    }, {"teammodels.py": TEAM_MODELS}, name="html.yaml")
    assert invoke("certify", "--target", "good", "--matrix", str(matrix))[0] == 0
    assert invoke("certify", "--target", "bad", "--matrix", str(matrix))[0] == 1
    assert invoke("certify", "--target", "arm", "--matrix", str(matrix))[0] == 0
    out = root / "html-out" / "report.html"
    code, text = invoke("report", "--html", str(out), "--matrix", str(matrix))
    assert code == 0, text
    return out


class Grid(HTMLParser):
    """Rows of table#grid as [(tag, class, text, href)] per cell."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[dict]] = []
        self.ids: set[str] = set()
        self._in_grid = self._in_body = False
        self._cell: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "table" and a.get("id") == "grid":
            self._in_grid = True
        elif self._in_grid and tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append([])
        elif self._in_body and tag in ("td", "th"):
            self._cell = {"tag": tag, "class": a.get("class", ""), "text": "", "href": None}
            self.rows[-1].append(self._cell)
        elif self._cell is not None and tag == "a":
            self._cell["href"] = a.get("href")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = None
        elif tag == "table" and self._in_grid:
            self._in_grid = self._in_body = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120,
    )


def parse(html: str) -> Grid:
    grid = Grid()
    grid.feed(html)
    return grid


def check_grid(grid: Grid) -> None:
    # target | rendered, locked, env, certified | cnn x torchscript, cnn x dynamo, teammodels:branchy x torchscript
    assert [row[0]["text"].strip() for row in grid.rows] == TARGETS
    assert all(len(row) == 8 and row[0]["tag"] == "th" for row in grid.rows)
    for row in grid.rows:  # every target links to its details section on the page
        name = row[0]["text"].strip()
        assert row[0]["href"] == f"#cert-{name}" and f"cert-{name}" in grid.ids
    good, bad, old, arm, later = ([set(cell["class"].split()) - {"cell"} for cell in row[1:]] for row in grid.rows)
    ok, none = {"ok"}, {"none"}
    assert good == [ok] * 6 + [none]
    assert bad == [ok] * 3 + [{"failed"}, none, none, {"failed"}]
    assert old == [ok] * 3 + [{"xfail"}, {"xfail"}, none, none]
    # arm is lock-only here and has no lock yet, so its certificate cannot be called fresh (dashed).
    assert arm == [{"missing"}, {"missing"}, {"na"}, {"lockonly", "stalecert"}, {"lockonly", "stalecert"}, none, none]
    assert later == [{"missing"}] * 5 + [none, none]
    # Failing class and worst error in the cells; run cells link to their details.
    assert "dynamic_axis_ignored" in grid.rows[1][7]["text"] and "abs" in grid.rows[1][7]["text"]
    assert "opset_unsupported" in grid.rows[2][5]["text"]
    assert "abs" in grid.rows[0][5]["text"] and "abs" in grid.rows[0][6]["text"]
    for cell in (grid.rows[1][7], grid.rows[2][5], grid.rows[0][6]):
        assert cell["href"] and cell["href"][1:] in grid.ids


def test_grid_from_the_file(report):
    check_grid(parse(report.read_text()))


def test_everything_is_escaped_and_nothing_is_fetched(report):
    html = report.read_text()
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in html
    # The bad target's ORT message holds C++ templates: escaped, never markup.
    assert "unordered_map<" not in html and "unordered_map&lt;" in html
    assert not re.search(r"<(link|img|iframe|object)\b", html) and "@import" not in html and "url(" not in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "remedy" in html and "lower the target opset" in html  # the bad run's remedy in its details


def test_report_needs_an_output(tmp_path):
    code, out = invoke("report", "--matrix", str(write_project(tmp_path, {"a": pip_target(tmp_path)})))
    assert code == 2 and "--html" in out


@needs_chromium
def test_chromium_renders_the_grid(report, tmp_path):
    result = chromium("--dump-dom", report.as_uri(), profile=tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    check_grid(parse(result.stdout))


@needs_chromium
def test_chromium_screenshot(report, tmp_path):
    png = tmp_path / "grid.png"
    result = chromium(f"--screenshot={png}", "--window-size=1400,900", report.as_uri(), profile=tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1400, 900)
    assert len(data) > 30_000  # a blank page is a few KB; the grid and its text are far more
