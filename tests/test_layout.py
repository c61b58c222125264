"""The package's layers: every import points down, never sideways, and no command imports another.

    cli  →  commands  →  leaderboard  →  stack · backbones · export · demo · plots  →  artifacts  →  audio
         →  metrics  →  foundation

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
        "stack": 4, "backbones": 4, "export": 4, "demo": 4, "plots": 4,
        "leaderboard": 4.5,  # reads the stacker's rows and bootstrap; the board command reads it
        "commands": 5, "cli": 6}
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
ESTIMATOR_INITS = {("ensemble/stack/meta.py", "LGBMBlender.__init__"), ("ensemble/stack/flip.py", "FlipBlender.__init__")}


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


def _typer_commands(tree: ast.AST) -> set[str]:
    """Names of the functions decorated `@command(...)`: typer commands take one parameter per option."""
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
            and any(isinstance(d, ast.Call) and getattr(d.func, "id", getattr(d.func, "attr", "")) == "command"
                    for d in n.decorator_list)}


# The functions of ensemble/ allowed wider than MAX_PARAMETERS, typer commands aside: none since issue 31.
# A wide function takes a record (a dataclass of its options) instead.
WIDE_FUNCTIONS: set[str] = set()


def test_no_new_wide_function_in_the_package() -> None:
    wide = []
    for path in sorted(PACKAGE.rglob("*.py")):
        commands = _typer_commands(ast.parse(path.read_text()))
        wide += [w for w in wide_functions([path]) if w.split(": ")[1].split(" takes")[0] not in commands]
    assert sorted(set(wide) - WIDE_FUNCTIONS) == []


TASK_PROPERTIES = {"exclusive", "label_by_label", "has_testlike"}
TASK_HOMES = {"ensemble/task.py", "ensemble/stack/base.py"}  # the task itself, and the blender base's dispatch
# Measured 2026-12-07 (issue 31): 54 reads of a task property outside its homes on e356ccc. The count may
# fall, never rise: a new difference between the kinds of task is a property or method of `Task` (or of
# the blender base), not one more `if task.exclusive` in a command.
MAX_TASK_BRANCHES = 9  # 47 on i31 alone; 53 with the merged main's new commands; 42 once the meta-learners,
# weighted and hillclimb fit jointly through the blender base (`_fit_joint`) and a run's `has_testlike_oof` got its own name;
# 39 once a task's row and target checks have one home each (`check_task_rows`, `check_task_targets`, `_check_task_rows`);
# 38 once leaderboard.noise asks a run `has_testlike_oof`; 22 once the task owns its row and target checks, training
# loss, class weights, fold pooling and estimator targets, the meta-learners' saved forms go through `_form`, and
# the board and CV scorers are the task's metric for both kinds; 19 once a classical estimator's label columns
# come with its targets (`Task.class_targets`) and the meta-feature check has one home (`stack.base.check_meta_task`)
# 12 once a scorer brings its usual numbers, the scorer a run records in and a scored file's breakdown (`Scorer.scores`,
# `.recorder`, `.detail`), and the task its test-like split (`Task.splits`) and fixed augmentation (`fixed_augment`);
# 9 once the task says whether predictions have a class report (`Task.class_report`: stack's usual numbers, the report's class sections)


def task_branches(paths: list[Path], root: Path = PACKAGE.parent) -> dict[str, int]:
    """Reads of `.exclusive` / `.label_by_label` / `.has_testlike` per module, outside the task's homes."""
    out = {}
    for path in paths:
        rel = str(path.relative_to(root))
        n = sum(isinstance(node, ast.Attribute) and node.attr in TASK_PROPERTIES and isinstance(node.ctx, ast.Load)
                for node in ast.walk(ast.parse(path.read_text())))
        if n and rel not in TASK_HOMES:
            out[rel] = n
    return out


def test_task_branches_do_not_spread() -> None:
    found = task_branches(sorted(PACKAGE.rglob("*.py")))
    assert sum(found.values()) <= MAX_TASK_BRANCHES, found


def test_the_task_branch_count_sees_a_new_branch(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text("def f(task, run):\n    return task.exclusive or run.task.label_by_label\n")
    assert task_branches([tmp_path / "mod.py"], tmp_path) == {"mod.py": 2}


# Fields of the artifact records (`ensemble.artifacts.records`) that hold plain dicts or lists of dicts.
# (`folds` left it when a run's folds became `FoldRecord`s: `x.folds["id"]` is now the folds table's column.)
RECORD_DICT_FIELDS = {"data", "versions", "source", "files", "metrics", "testlike_domain", "options", "machine",
                      "seconds", "onnxruntime", "params", "blender", "calibrators", "decisions", "state", "runs",
                      "prior", "meta_features", "decision", "leaderboard", "prior_sensitivity", "comparison", "cv"}
# Measured 2026-12-07 (issue 31): 61 string-key reads of record fields outside ensemble/artifacts/ on
# e356ccc, 50 after the sidecar's state, decision and calibration notes became records. The count may fall,
# never rise: a reader that needs a key gets a typed record with an attribute.
MAX_RECORD_KEY_READS = 0  # 50 on i31 alone; 72 with the merged main's board and probe code; 34 once
# the CV scores became records (`CVScores`, `ScoreRecord`, `GainRecord`); 28 with the prior's (`PriorRecord`);
# 27 once leaderboard.noise reads `metrics.rows_sha256`; 0 once a run's folds (`FoldRecord`, `OnnxFile`), the
# recipe's runs (`RunEntry`), prior and chosen run, the leaderboard scores (`LeaderboardRecord`) and the
# finetune options read (`RunManifest.max_seconds`, `.weights`) became attributes, and writes stopped counting


def _key_read(node: ast.AST) -> ast.AST | None:
    """`x["key"]` or `x.get("key", …)` → `x` (a read: `x["key"] = v` writes); else None."""
    if (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)):
        return node.value
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args
            and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        return node.func.value
    return None


def _root(node: ast.AST) -> ast.AST:
    """What a chain of key reads (`a.b["x"].get("y") or {}`, `dict(a.b)`) starts from."""
    while True:
        inner = _key_read(node)
        if inner is not None:
            node = inner
        elif isinstance(node, ast.BoolOp):
            node = node.values[0]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("dict", "list") and node.args:
            node = node.args[0]
        else:
            return node


def record_key_reads(tree: ast.AST) -> int:
    """String-key reads of a record's dict field: on the attribute itself (`recipe.prior["mode"]`), or on a
    local name bound to it in the same function (`prior = recipe.prior or {}; prior.get("mode")`)."""
    def from_record(node: ast.AST, bound: set[str]) -> bool:
        r = _root(node)
        if isinstance(r, ast.Attribute):
            return r.attr in RECORD_DICT_FIELDS and not (isinstance(r.value, ast.Name) and r.value.id == "self")
        return isinstance(r, ast.Name) and r.id in bound

    counted: set[int] = set()
    for scope in [tree, *[n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]]:
        nodes, bound = list(ast.walk(scope)), set()
        for _ in range(2):  # a name bound from a name bound from a record
            for n in nodes:
                if (isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
                        and from_record(n.value, bound)):
                    bound.add(n.targets[0].id)
                if isinstance(n, (ast.For, ast.comprehension)) and isinstance(n.target, ast.Name) and from_record(n.iter, bound):
                    bound.add(n.target.id)
        counted |= {id(n) for n in nodes if (v := _key_read(n)) is not None and from_record(v, bound)}
    return len(counted)


def test_record_key_reads_do_not_spread() -> None:
    found = {str(p.relative_to(PACKAGE.parent)): record_key_reads(ast.parse(p.read_text()))
             for p in sorted(PACKAGE.rglob("*.py")) if p.parent.name != "artifacts"}
    assert sum(found.values()) <= MAX_RECORD_KEY_READS, {k: v for k, v in found.items() if v}


def test_the_record_key_count_sees_each_kind_of_read() -> None:
    code = ("def f(recipe, other):\n"
            "    prior = recipe.prior or {}\n"
            "    recipe.params['x'] = 1\n"  # a write, not a read
            "    return recipe.state['blender'].get('method'), prior.get('mode'), other['x'], recipe.name\n")
    assert record_key_reads(ast.parse(code)) == 3
