"""Security: nothing is unpickled or evaluated, user and plugin strings are escaped in the HTML
report, and list-file paths cannot leave the dataset root.

Related tests elsewhere: a pickle or web page in place of a stored checkpoint
(test_bad_artifacts.py), names that would become paths (test_bad_config.py,
test_plugin_faults.py), '../' and absolute list paths in every list format
(tests/test_data.py::test_listfile_rejects_paths_outside_the_root), escaping of fake
records (tests/test_report.py::test_data_strings_are_escaped).
"""

from __future__ import annotations

import ast
import json
import os
import pickle
from pathlib import Path
from typing import Iterator

import pytest
import torch

from hashbench import plugins
from hashbench.data.listfile import ListFile
from hashbench.errors import DataError, UserError
from hashbench.report import render_html

from .conftest import FAST, assert_clear_error, invoke, write_list_dataset

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["hashbench", "attacks", "defenses", "examples"]


def _calls(tree: ast.AST) -> Iterator[tuple[str, ast.Call]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield ast.unparse(node.func), node


def _keyword(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def test_no_code_path_unpickles_or_evaluates_stored_data() -> None:
    forbidden = {"pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "dill.loads", "joblib.load",
                 "marshal.load", "marshal.loads", "shelve.open", "yaml.load", "yaml.unsafe_load", "yaml.full_load",
                 "torch.jit.load", "eval", "exec"}
    problems, torch_loads = [], 0
    files = [p for d in SOURCES for p in (ROOT / d).rglob("*.py")]
    assert len(files) > 20
    for path in files:
        for name, call in _calls(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            if name in forbidden:
                problems.append(f"{where}: {name}")
            elif name == "torch.load":
                torch_loads += 1
                if _keyword(call, "weights_only") is not True:
                    problems.append(f"{where}: torch.load without weights_only=True")
            elif name in ("np.load", "numpy.load") and _keyword(call, "allow_pickle") is not False:
                if _keyword(call, "allow_pickle") is True:
                    problems.append(f"{where}: {name}(allow_pickle=True)")
    assert torch_loads >= 1  # the --pretrained weights file: the scan does see it
    assert not problems, problems


class _Planted:
    """Unpickling this creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pretrained_weights_file_that_is_a_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    weights = tmp_path / "alexnet.pth"
    weights.write_bytes(pickle.dumps({"features.0.weight": _Planted(marker)}, protocol=2))
    backbone = plugins.backbones.create("alexnet", {"pretrained": str(weights)})
    with pytest.raises(UserError, match=r"backbone alexnet: cannot read .*alexnet.pth as a state_dict"):
        backbone.build(32)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["registry", "grid-file", "set"])
def test_yaml_tags_that_run_code_are_refused(tmp_path: Path, where: str) -> None:
    marker = tmp_path / "constructed"
    tag = f'!!python/object/apply:os.system ["touch {marker}"]'
    if where == "registry":
        path = tmp_path / "registry.yaml"
        path.write_text(f"datasets: {tag}\nprofiles: {{}}\ngrids: {{}}\n")
        result = invoke("plan", "--registry", str(path))
        assert_clear_error(result, str(path), "invalid YAML")
    elif where == "grid-file":
        path = tmp_path / "grid.yaml"
        path.write_text(f"datasets: [shapes-tiny]\nmethods: {tag}\n")
        result = invoke("plan", "--grid", str(path), "--results-dir", str(tmp_path / "r"))
        assert_clear_error(result, str(path), "invalid YAML")
    else:
        result = invoke("plan", *FAST, "--set", f"seeds={tag}", "--results-dir", str(tmp_path / "r"))
        assert_clear_error(result, "--set seeds")
    assert not marker.exists()


# -- the HTML report ---------------------------------------------------------------------------------

EVIL_DIST = "<script>alert('dist')</script>"
EVIL_VERSION = "<img src=x onerror=alert('version')>"
EVIL_ERROR = "<script>alert('error')</script>"
EVIL_RUN = "<img src=x onerror=alert('run')>"


def test_plugin_strings_from_a_real_run_are_escaped_in_the_report(tmp_path: Path) -> None:
    center = plugins.attacks.get("center")

    class Probe(center):
        """A working attack from a distribution with a hostile name."""

    class Crashes(center):
        def perturb(self, model, x, y, target, ctx):
            raise ValueError(EVIL_ERROR)

    plugins.attacks.register("xss-probe", Probe, distribution=EVIL_DIST, version=EVIL_VERSION)
    plugins.attacks.register("xss-crash", Crashes, distribution=EVIL_DIST, version=EVIL_VERSION)
    try:
        result = invoke("run", *FAST, "--set", "attacks=[xss-probe,xss-crash]", "--run", "xss",
                        "--results-dir", str(tmp_path), "--quiet", "--no-report")
    finally:
        plugins.attacks.unregister("xss-probe")
        plugins.attacks.unregister("xss-crash")
    assert result.exit_code == 1, result.output  # the crashing attack's cell failed, the others are done
    # a run name is a name (test_hostile_names.py), but a received run.json may claim any
    manifest = json.loads((tmp_path / "xss" / "run.json").read_text())
    (tmp_path / "xss" / "run.json").write_text(json.dumps({**manifest, "run": EVIL_RUN, "command": EVIL_RUN}))
    page = render_html("xss", results_dir=tmp_path)
    # the page's own markup (its script, thumbnails) is fine; none of these may appear raw
    for hostile in (EVIL_DIST, EVIL_VERSION, EVIL_ERROR, EVIL_RUN, "<img src=x", "alert('"):
        assert hostile not in page, page[page.find(hostile) - 200:page.find(hostile) + 200]
    assert "&lt;script&gt;alert(&#39;dist&#39;)&lt;/script&gt;" in page  # the probe's provenance
    assert "&lt;img src=x onerror=alert(&#39;version&#39;)&gt;" in page
    assert "&lt;script&gt;alert(&#39;error&#39;)&lt;/script&gt;" in page  # the failed cell's error
    assert "&lt;img src=x onerror=alert(&#39;run&#39;)&gt;" in page  # the manifest's command


# -- list-file paths -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "bad",
    ["..\\outside.png", "img\\..\\..\\outside.png", "img/./../../outside.png", "..", "/", "C:outside.png",
     "\\outside.png", "img/../../../../etc/passwd"],
)
def test_list_paths_cannot_leave_the_root(tmp_path: Path, bad: str) -> None:
    root = write_list_dataset(tmp_path / "data")
    (tmp_path / "outside.png").write_bytes((root / "img/0.png").read_bytes())  # exists, outside the root
    lines = (root / "test.txt").read_text().splitlines()
    lines[2] = f"{bad} 0 1 0"
    (root / "test.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        ListFile.from_params({"root": str(root), "image_size": 32, "resize": 32})
    message = str(err.value)
    assert "test.txt:3: image path" in message and repr(bad) in message
    assert "absolute" in message or "'..'" in message


def test_a_path_inside_the_root_that_looks_odd_is_fine(tmp_path: Path) -> None:
    root = write_list_dataset(tmp_path / "data")
    text = (root / "test.txt").read_text().replace("img/17.png", "./img//17.png")
    (root / "test.txt").write_text(text)
    data = ListFile.from_params({"root": str(root), "image_size": 32, "resize": 32})
    assert "img/17.png" in data.paths
    assert torch.equal(data.images([data.paths.index("img/17.png")]),
                       ListFile.from_params({"root": str(root), "image_size": 32, "resize": 32})
                       .images([data.paths.index("img/17.png")]))
