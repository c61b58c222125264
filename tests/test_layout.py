"""The package's layers: every import points down, and no command imports another sideways.

    cli  →  commands  →  stack · backbones · export · demo · plots  →  artifacts  →  audio  →  metrics  →  foundation

`foundation` is `errors`, `progress`, `probability` and `registry`. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ensemble

PACKAGE = Path(ensemble.__file__).parent
FOUNDATION = {"errors", "progress", "probability", "registry", "task"}
RANK = {"foundation": 0, "metrics": 1, "audio": 2, "artifacts": 3,
        "stack": 4, "backbones": 4, "export": 4, "demo": 4, "plots": 4, "commands": 5, "cli": 6}
# Commands that are compositions of other commands, by design: the demo runs the pipeline, the report
# shows the board and restacks submissions to draw them, tune fine-tunes with drawn options.
COMPOSITES = {"commands.demo": {"commands.board", "commands.finetune", "commands.oof", "commands.score",
                                "commands.stack"},
              "commands.report": {"commands.board", "commands.stack"},
              "commands.finetune_ray": {"commands.finetune"},  # finetune's folds, as Ray tasks
              "commands.tune": {"commands.finetune"}}


def area(module: str) -> str:
    """`ensemble.stack.nested` → 'stack'; a top-level foundation module → 'foundation'."""
    parts = module.split(".")[1:]
    return "foundation" if parts[0] in FOUNDATION else parts[0].removesuffix(".py")


def imports() -> dict[str, set[str]]:
    """Every module of the package and the `ensemble.*` modules it imports (anywhere in its body)."""
    out: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("ensemble", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ensemble."):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("ensemble.")}
        out[name] = found
    return out


def violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in graph.items():
        if module == "ensemble":
            continue
        for target in targets:
            a, b = area(module), area(target)
            if RANK[b] > RANK[a]:
                bad.append(f"{module} imports {target}: {b} is above {a}")
            if a == b == "commands":
                mine, theirs = module.split(".")[1:3], target.split(".")[1:3]
                if mine != theirs and ".".join(theirs) not in COMPOSITES.get(".".join(mine), set()):
                    bad.append(f"{module} imports {target}: commands do not import each other")
    return sorted(bad)


def test_every_top_level_module_has_a_layer() -> None:
    for module in imports():
        if module != "ensemble":
            assert area(module) in RANK, f"{module} belongs to no layer; add it to RANK or move it"


def test_imports_point_down_and_commands_do_not_import_each_other() -> None:
    assert violations(imports()) == []


@pytest.mark.parametrize("module, target, why", [
    ("ensemble.metrics.dacon", "ensemble.stack.base", "above"),
    ("ensemble.audio.load", "ensemble.artifacts.io", "above"),
    ("ensemble.commands.oof", "ensemble.commands.finetune", "each other"),
])
def test_the_check_catches_a_wrong_import(module, target, why) -> None:
    graph = {m: set(t) for m, t in imports().items()}
    graph[module].add(target)
    assert any(why in v and module in v for v in violations(graph))
