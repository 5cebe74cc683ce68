"""The floor plan holds: serving never loads torch or Lightning; the core never imports a slice."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "churnsense"
SERVING = (
    "churnsense.cli",
    "churnsense.churn.serve",
    "churnsense.churn.score",
    "churnsense.churn.release",
    "churnsense.feedback.serve",
    "churnsense.feedback.score",
    "churnsense.feedback.release",
    "churnsense.insights.report",
)
HEAVY = ("torch", "pytorch_lightning", "lightning", "lightning_fabric", "transformers")


def test_serving_path_does_not_import_torch():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in SERVING)
        + f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_arrows_point_down():
    """core imports no slice; data imports neither slices nor insights; insights and monitoring import no model
    slice."""
    rules = {
        "core": ("churn", "feedback", "insights", "synth", "data"),
        "data": ("churn", "feedback", "insights", "synth"),
        "insights": ("churn", "feedback", "synth"),
        "monitoring": ("churn", "feedback", "synth", "insights"),
    }
    bad = []
    for package, forbidden in rules.items():
        for path in (SRC / package).rglob("*.py"):
            for name in _imports(path):
                if any(name == f"churnsense.{f}" or name.startswith(f"churnsense.{f}.") for f in forbidden):
                    bad.append(f"{path.relative_to(SRC)} imports {name}")
    assert not bad, bad
