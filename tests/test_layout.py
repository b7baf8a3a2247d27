"""Imports flow one way between the folders (README, "Development"): a test that fails on the first import against it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("export", "calibration", "runtime")  # subpackages, each above the ones after it and above the core
# What each part may import of those subpackages. The core (resnet_edge/) imports none of them except where it
# runs models: evaluate (through the Predictor) and the bench; the CLI is the front that joins every stage.
ALLOWED = {
    "runtime": set(),
    "calibration": {"runtime"},
    "export": {"runtime", "calibration"},
    "core": set(),
    "front": set(LAYERS),
}
FRONTS = ("resnet_edge/cli/", "resnet_edge/bench/", "resnet_edge/evaluate.py", "resnet_edge/__main__.py")


def part_of(path: Path) -> str:
    relative = path.relative_to(ROOT).as_posix()
    if relative.startswith(FRONTS):
        return "front"
    return relative.split("/")[0] if relative.split("/")[0] in LAYERS else "core"


def imported_layers(path: Path) -> set[str]:
    """The subpackages (export, calibration, runtime) that ``path`` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if len(parts) > 1 and parts[0] == "resnet_edge" and parts[1] in LAYERS:
                found.add(parts[1])
    return found


SOURCES = sorted(p for folder in ("resnet_edge", *LAYERS) for p in (ROOT / folder).rglob("*.py"))


def test_imports_flow_one_way():
    wrong = []
    for path in SOURCES:
        part = part_of(path)
        against = imported_layers(path) - ALLOWED[part] - {part}
        wrong += [f"{path.relative_to(ROOT)} ({part}) imports resnet_edge.{name}" for name in sorted(against)]
    assert len(SOURCES) > 40 and not wrong, "\n".join(wrong)


def test_the_check_sees_an_import_against_the_flow(tmp_path):
    # The check itself must be able to fail: a core module importing the runtime.
    bad = ROOT / "resnet_edge" / "data.py"
    assert imported_layers(bad) == set()
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from resnet_edge.runtime.predictor import Predictor\n")
    assert imported_layers(probe) == {"runtime"}
