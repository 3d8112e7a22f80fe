"""The import graph follows the architecture: lower layers never import higher ones (STYLE.md, point 2)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "rainier"

# Rank of each top-level module or subpackage; a module may import only modules of lower or equal rank.
RANK = {
    "errors": 0,
    "units": 0,
    "precision": 0,
    "frame": 0,
    "limits": 0,
    "catalog": 1,
    "hardware": 2,
    "workload": 2,
    "parallel": 3,
    "perf": 4,
    "calibrate": 5,
    "sim": 5,
    "fleet": 6,
    "serve": 6,
    "search": 7,
    "launch": 7,
    "report": 8,
    "api": 9,
    "cli": 10,
    "web": 10,
}
# Same-rank siblings that must stay independent of each other.
INDEPENDENT = [("hardware", "workload"), ("fleet", "serve"), ("search", "launch")]


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rainier."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("rainier."))
    return found


def test_every_layer_is_ranked() -> None:
    layers = {_layer(p) for p in SRC.rglob("*.py")} - {"__init__", "__main__"}
    assert layers <= set(RANK), f"unranked layers: {layers - set(RANK)}"


def test_imports_flow_downwards() -> None:
    bad = []
    for path in SRC.rglob("*.py"):
        layer = _layer(path)
        if layer in {"__init__", "__main__"}:
            continue
        for target in _imports(path):
            if RANK.get(target, 99) > RANK[layer]:
                bad.append(f"{path.relative_to(SRC)} imports rainier.{target}")
            if (layer, target) in INDEPENDENT or (target, layer) in INDEPENDENT:
                bad.append(f"{path.relative_to(SRC)} couples {layer} and {target}")
    assert not bad, "\n".join(bad)
