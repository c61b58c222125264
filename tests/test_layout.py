"""The package's layers: every import points down, never sideways, and no command imports another.

    cli  →  commands  →  stack · backbones · export · demo · plots  →  artifacts  →  audio  →  metrics  →  foundation

`foundation` is `errors`, `progress`, `probability` and `registry`. The five areas of one layer do not
import each other (what two of them share belongs a layer down). Imports inside functions count too, and
`from ensemble import errors` imports `ensemble.errors`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ensemble

PACKAGE = Path(ensemble.__file__).parent
FOUNDATION = {"errors", "progress", "probability", "registry", "task"}
RANK = {"foundation": 0, "metrics": 1, "audio": 2, "artifacts": 3,
        "stack": 4, "backbones": 4, "export": 4, "demo": 4, "plots": 4, "leaderboard": 4, "commands": 5, "cli": 6}
# Commands that are compositions of other commands, by design: the demo runs the pipeline, the report
# shows the board and restacks submissions to draw them, tune fine-tunes with drawn options.
COMPOSITES = {"commands.demo": {"commands.board", "commands.finetune", "commands.oof", "commands.score",
                                "commands.stack"},
              "commands.report": {"commands.board", "commands.stack"},
              "commands.finetune_ray": {"commands.finetune"},  # finetune's folds, as Ray tasks
              "commands.tune": {"commands.finetune"}}
# The cli modules that are no command's: the entry point and what every command may use. Each other
# module of cli is one command's (`ens stack` → cli.stack), and only the entry point imports it.
CLI_SHARED = {"app", "shared", "config", "present", "progress"}


def area(module: str) -> str:
    """`ensemble.stack.nested` → 'stack'; a top-level foundation module → 'foundation'."""
    parts = module.split(".")[1:]
    return "foundation" if parts[0] in FOUNDATION else parts[0].removesuffix(".py")


def module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, not `.__init__`)."""
    return {".".join(("ensemble", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): path
            for path in PACKAGE.rglob("*.py")}


def imported(tree: ast.AST, modules: set[str]) -> set[str]:
    """The `ensemble.*` modules a syntax tree imports (anywhere in its body).

    `from ensemble.x import y` counts as importing `ensemble.x.y` when that is a module, so
    `from ensemble import errors` imports `ensemble.errors`; a name that is no module (`from ensemble
    import __version__`) imports the package it comes from.
    """
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ensemble":
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                      for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ensemble.")}
    return found


def imports() -> dict[str, set[str]]:
    """Every module of the package and the `ensemble.*` modules it imports."""
    modules = module_names()
    return {name: imported(ast.parse(path.read_text()), set(modules)) for name, path in modules.items()}


def is_cli_command(module: str) -> bool:
    """`ensemble.cli.stack` → True: a module of cli that is one command's, not the entry point or a helper."""
    parts = module.split(".")
    return parts[1] == "cli" and len(parts) > 2 and parts[2] not in CLI_SHARED


def violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in graph.items():
        if module == "ensemble":
            continue
        for target in targets - {"ensemble"}:  # the top package (`__version__`, `load`) is everyone's
            a, b = area(module), area(target)
            if RANK[b] > RANK[a]:
                bad.append(f"{module} imports {target}: {b} is above {a}")
            elif RANK[b] == RANK[a] and a != b:
                bad.append(f"{module} imports {target}: {a} and {b} are side by side on one layer")
            if a == b == "commands":
                mine, theirs = module.split(".")[1:3], target.split(".")[1:3]
                if mine != theirs and ".".join(theirs) not in COMPOSITES.get(".".join(mine), set()):
                    bad.append(f"{module} imports {target}: commands do not import each other")
            if is_cli_command(target) and module != "ensemble.cli.app":
                bad.append(f"{module} imports {target}: only ensemble.cli.app imports a cli command")
    return sorted(bad)


def test_every_top_level_module_has_a_layer() -> None:
    for module in imports():
        if module != "ensemble":
            assert area(module) in RANK, f"{module} belongs to no layer; add it to RANK or move it"


def test_imports_point_down_never_sideways_and_commands_do_not_import_each_other() -> None:
    assert violations(imports()) == []


@pytest.mark.parametrize("module, statement, why", [
    ("ensemble.metrics.dacon", "from ensemble.stack.base import sigmoid", "above"),
    ("ensemble.metrics.dacon", "from ensemble import stack", "above"),
    ("ensemble.audio.load", "import ensemble.artifacts.io", "above"),
    ("ensemble.export.ops", "from ensemble.stack.prior import adapt_prior", "side by side"),
    ("ensemble.commands.oof", "from ensemble.commands.finetune import finetune", "each other"),
    ("ensemble.cli.stack", "from ensemble.cli.board import board_cmd", "only ensemble.cli.app"),
    ("ensemble.cli.stack", "from ensemble.cli import board", "only ensemble.cli.app"),
])
def test_the_check_catches_a_wrong_import(module, statement, why) -> None:
    graph = imports()
    graph[module] |= imported(ast.parse(statement), set(module_names()))
    assert any(why in v and module in v for v in violations(graph))


MAX_PARAMETERS = 8
# scikit-learn's estimator contract: every hyper-parameter is its own `__init__` keyword (`get_params`)
ESTIMATOR_INITS = {("ensemble/stack/meta.py", "LGBMBlender.__init__")}


def wide_functions(paths: list[Path], root: Path = PACKAGE.parent) -> list[str]:
    """Functions taking more than MAX_PARAMETERS parameters (self/cls not counted; *args, **kwargs one each)."""
    wide = []
    for path in paths:
        tree = ast.parse(path.read_text())
        for cls in [None, *[n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]]:
            body = tree.body if cls is None else cls.body
            for node in body:
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                a = node.args
                names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)] + [p.arg for p in (a.vararg, a.kwarg) if p]
                count = len([n for n in names if n not in ("self", "cls")])
                where = (str(path.relative_to(root)), f"{cls.name}.{node.name}" if cls else node.name)
                if count > MAX_PARAMETERS and where not in ESTIMATOR_INITS:
                    wide.append(f"{where[0]}: {where[1]} takes {count}")
    return wide


def test_the_stacking_functions_take_few_parameters() -> None:
    """Options travel as one `StackRequest`, tensors as one `StackInputs`, not as loose keywords."""
    paths = sorted((PACKAGE / "stack").glob("*.py")) + [PACKAGE / "commands" / "stack.py"]
    assert wide_functions(paths) == []


def test_the_parameter_check_catches_a_wide_function(tmp_path: Path) -> None:
    code = ("def narrow(a, b, c, d, e, f, g, *, h=0):\n    pass\n"
            "def wide(a, b, c, d, e, f, g, *, h=0, i=1):\n    pass\n"
            "class C:\n    def m(self, a, b, c, d, e, f, g, *args, **kwargs):\n        pass\n")
    (tmp_path / "mod.py").write_text(code)
    assert wide_functions([tmp_path / "mod.py"], tmp_path) == ["mod.py: wide takes 9", "mod.py: C.m takes 9"]
