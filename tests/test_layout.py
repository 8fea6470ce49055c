"""The house rules of engine/'s layout, read from the source with `ast` (nothing of engine is imported to
find its imports):

  (a) no import circles among engine's modules;
  (b) no upward import: every import goes to the same part or an earlier one in the pipeline's order
      kernel < spec < plan < providers < store < execute < judging < analyze < report < export < compare
             < scenarios/<name> < checks < study < sweep < cli, __main__ < engine (the public API);
  (c) the kernel imports no stage (not even under TYPE_CHECKING), and nothing outside engine/scenarios/<name>/ names a
      scenario module (not even by a string given to import_module);
  (d) no logic in any engine/**/__init__.py: a docstring, imports, `__all__` and `__version__` only;
  (e) the public API: every name in `engine.__all__` exists, and the tests use no other name of `engine`.

Every import statement counts, also those inside functions and methods. Imports under
`if TYPE_CHECKING:` are listed apart: they are left out of (a) and (b) and of "at runtime" in (c),
and may be used in annotations only. `from a.b import c` is an edge to the module a.b.c when that file
exists, else to a.b; parents' __init__ files are not implicit edges. A string that is exactly the
dotted name of an engine module, given to import_module/__import__ (directly or through a module-level
constant), or a dotted one listed in a tuple/list/set literal, is an edge too ("by name").

The analysis is checked on small synthetic trees first (test_analysis_*), so that the rules below
cannot pass because the analysis sees nothing.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
ENGINE_DIR = REPO / "engine"
PKG = "engine"

# The pipeline's order: a part may import its own modules and those of earlier parts only.
STAGES = ["spec", "plan", "providers", "store", "execute", "judging", "analyze", "report", "export", "compare"]
RANK: dict[str, int] = {
    "kernel": 0,
    # engine/scenarios/__init__.py, the plug-ins' namespace: a docstring only (rule d), imported by the
    # kernel's registry to discover the plug-ins, so it sits with the kernel.
    "scenarios": 0,
    **{stage: i for i, stage in enumerate(STAGES, 1)},
    "scenarios/*": len(STAGES) + 1,  # each scenario plug-in: may import kernel..report
    "checks": len(STAGES) + 2,
    "study": len(STAGES) + 3,
    "sweep": len(STAGES) + 4,
    "cli": len(STAGES) + 5,  # engine/cli.py and engine/__main__.py
    "api": len(STAGES) + 6,  # engine/__init__.py
}
IMPORTERS = ("import_module", "__import__")


# ---------------------------------------------------------------------------------------- analysis

@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    line: int
    by_name: bool = False
    type_checking: bool = False

    def __str__(self) -> str:
        how = " (by name)" if self.by_name else " (TYPE_CHECKING)" if self.type_checking else ""
        return f"{self.src}:{self.line} -> {self.dst}{how}"


@dataclass
class Tree:
    root: Path
    modules: dict[str, Path]  # dotted name -> file
    namespaces: set[str]      # package folders without __init__.py (no code runs on importing them)
    edges: list[Edge]
    tc_misuse: list[str]      # TYPE_CHECKING names used outside annotations


def module_names(root: Path) -> tuple[dict[str, Path], set[str]]:
    mods: dict[str, Path] = {}
    spaces: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
        for i in range(1, len(parts)):
            spaces.add(".".join(parts[:i]))
    return mods, spaces - set(mods)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside the body of an `if TYPE_CHECKING:` (not its else branch)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                inside.update(id(n) for n in ast.walk(stmt))
    return inside


def _docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def _module_constants(tree: ast.Module) -> dict[str, str]:
    out = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = stmt.value.value
    return out


def _literal_prefix(node: ast.expr, constants: dict[str, str]) -> tuple[str, bool] | None:
    """The string a module-name argument spells, and whether it is complete (an f-string is not)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value, True
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id], True
    if isinstance(node, ast.JoinedStr):
        prefix = ""
        for part in node.values:
            if isinstance(part, ast.Constant):
                prefix += str(part.value)
            elif isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name) \
                    and part.value.id in constants and part.conversion == -1 and part.format_spec is None:
                prefix += constants[part.value.id]
            else:
                return prefix, False
        return prefix, True
    return None


def resolve(current: str, is_pkg: bool, module: str, name: str | None, level: int,
            known: set[str], spaces: set[str]) -> str | None:
    """The engine module an import statement loads (None: outside the package, or a namespace folder)."""
    if level:
        base = current.split(".") if is_pkg else current.split(".")[:-1]
        base = base[: len(base) - (level - 1)] if level > 1 else base
        module = ".".join([*base, module] if module else base)
    if name is not None and name != "*" and f"{module}.{name}" in known:
        return f"{module}.{name}"
    parts = module.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        if candidate in spaces:
            return None
        parts.pop()
    return None


def _annotation_nodes(tree: ast.AST) -> set[int]:
    out: set[int] = set()
    for node in ast.walk(tree):
        anns: list[ast.expr | None] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            anns.append(node.returns)
        elif isinstance(node, ast.arg):
            anns.append(node.annotation)
        elif isinstance(node, ast.AnnAssign):
            anns.append(node.annotation)
        for ann in anns:
            if ann is not None:
                out.update(id(n) for n in ast.walk(ann))
    return out


def scan(root: Path) -> Tree:
    mods, spaces = module_names(root)
    known = set(mods)
    edges: list[Edge] = []
    misuse: list[str] = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_pkg = path.name == "__init__.py"
        in_tc = _type_checking_nodes(tree)
        docstrings = _docstring_nodes(tree)
        constants = _module_constants(tree)
        found: dict[tuple[str, bool], Edge] = {}

        def add(dst: str | None, line: int, by_name: bool, tc: bool) -> None:
            if dst is None or dst == mod or not (dst == PKG or dst.startswith(PKG + ".")):
                return
            found.setdefault((dst, tc), Edge(mod, dst, line, by_name, tc))

        tc_names: set[str] = set()
        for node in ast.walk(tree):
            tc = id(node) in in_tc
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(resolve(mod, is_pkg, alias.name, None, 0, known, spaces), node.lineno, False, tc)
                    if tc:
                        tc_names.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    add(resolve(mod, is_pkg, node.module or "", alias.name, node.level, known, spaces),
                        node.lineno, False, tc)
                    if tc:
                        tc_names.add(alias.asname or alias.name)
            elif isinstance(node, ast.Call) and node.args:
                func = node.func
                fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if fname in IMPORTERS:
                    spelled = _literal_prefix(node.args[0], constants)
                    if spelled is not None:
                        text, complete = spelled
                        if complete:
                            add(resolve(mod, is_pkg, text, None, 0, known, spaces), node.lineno, True, tc)
                        else:
                            # f"engine.scenarios.{name}" discovers whatever is on disk; a prefix that
                            # already names one module (f"engine.scenarios.escalation.{x}") is an edge to it.
                            head = text.rstrip(".")
                            if head in known and head.count(".") >= 2:
                                add(head, node.lineno, True, tc)
            elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                for elt in node.elts:
                    # Dotted names only: a bare "engine" in a list is a command line's word, not an import.
                    if isinstance(elt, ast.Constant) and isinstance(elt.value, str) and elt.value in known \
                            and "." in elt.value and id(elt) not in docstrings:
                        add(elt.value, node.lineno, True, tc)
        edges.extend(found.values())

        if tc_names:
            annotated = _annotation_nodes(tree)
            future = any(isinstance(s, ast.ImportFrom) and s.module == "__future__"
                         and any(a.name == "annotations" for a in s.names) for s in tree.body)
            for node in ast.walk(tree):
                if isinstance(node, ast.Name) and node.id in tc_names and id(node) not in in_tc:
                    if id(node) not in annotated:
                        misuse.append(f"{mod}:{node.lineno} uses {node.id} (a TYPE_CHECKING import) at runtime")
                    elif not future:
                        misuse.append(f"{mod}:{node.lineno} annotation {node.id} is evaluated at runtime "
                                      "(no `from __future__ import annotations`, not quoted)")
    return Tree(root, mods, spaces, edges, misuse)


def part_of(module: str) -> str:
    parts = module.split(".")
    if parts == [PKG]:
        return "api"
    head = parts[1]
    if head in ("cli", "__main__"):
        return "cli"
    if head == "scenarios":
        return "scenarios" if len(parts) == 2 else f"scenarios/{parts[2]}"
    return head


def rank_of(part: str) -> int | None:
    return RANK.get("scenarios/*" if part.startswith("scenarios/") else part)


def sccs(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    for start in nodes:
        if start in index:
            continue
        index[start] = low[start] = len(index)
        stack.append(start)
        on.add(start)
        work = [(start, iter(sorted(edges.get(start, ()))))]
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    out.append(sorted(comp))
    return out


def runtime(tree: Tree) -> list[Edge]:
    return [e for e in tree.edges if not e.type_checking]


def circles(tree: Tree) -> list[tuple[list[str], list[Edge]]]:
    graph: dict[str, set[str]] = {m: set() for m in tree.modules}
    for e in runtime(tree):
        graph[e.src].add(e.dst)
    out = []
    for comp in sccs(sorted(tree.modules), graph):
        if len(comp) > 1:
            inside = set(comp)
            out.append((comp, sorted((e for e in runtime(tree) if e.src in inside and e.dst in inside),
                                     key=lambda e: (e.src, e.line))))
    return out


def unplaced(tree: Tree) -> list[str]:
    return sorted({m for m in tree.modules if rank_of(part_of(m)) is None})


def upward(tree: Tree) -> list[Edge]:
    bad = []
    for e in runtime(tree):
        src, dst = part_of(e.src), part_of(e.dst)
        if src == dst or rank_of(src) is None or rank_of(dst) is None:
            continue
        if rank_of(dst) > rank_of(src) or (rank_of(dst) == rank_of(src) and src.startswith("scenarios/")):
            bad.append(e)  # later part, or another scenario plug-in
    return sorted(bad, key=lambda e: (e.src, e.line))


def kernel_to_stages(tree: Tree) -> list[Edge]:
    """The kernel's imports of stages, TYPE_CHECKING ones too: a plug-in's types are the kernel's own
    Protocols (engine/kernel/plugin_context.py), so typing the kernel needs no stage either."""
    return [e for e in tree.edges if part_of(e.src) == "kernel" and part_of(e.dst) not in ("kernel", "scenarios")]


def scenario_named_outside(tree: Tree) -> list[Edge]:
    """Edges from outside a scenario plug-in to one (TYPE_CHECKING imports too: deleting the scenario
    would break the type check of the importer)."""
    return sorted((e for e in tree.edges if part_of(e.dst).startswith("scenarios/")
                   and not part_of(e.src).startswith("scenarios/")), key=lambda e: (e.src, e.line))


def scenario_strings_outside(tree: Tree) -> list[str]:
    """String literals (not docstrings) outside the plug-ins that spell a scenario module's dotted name."""
    plugins = sorted({".".join(m.split(".")[:3]) for m in tree.modules if part_of(m).startswith("scenarios/")})
    hits = []
    for mod, path in tree.modules.items():
        if part_of(mod).startswith("scenarios/"):
            continue
        parsed = ast.parse(path.read_text())
        docstrings = _docstring_nodes(parsed)
        for node in ast.walk(parsed):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                for plugin in plugins:
                    if node.value == plugin or node.value.startswith(plugin + ".") or f"'{plugin}" in node.value \
                            or f'"{plugin}' in node.value:
                        hits.append(f"{mod}:{node.lineno} {node.value!r}")
    return hits


def init_logic(path: Path) -> list[str]:
    """Statements of an __init__.py other than a leading docstring, imports, `__all__`/`__version__` = literal."""
    tree = ast.parse(path.read_text())
    bad = []
    for i, stmt in enumerate(tree.body):
        if i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                and isinstance(stmt.value.value, str):
            continue
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if stmt.value is not None and all(isinstance(t, ast.Name) and t.id in ("__all__", "__version__")
                                              for t in targets):
                try:
                    ast.literal_eval(stmt.value)
                    continue
                except ValueError:
                    pass
        name = getattr(stmt, "name", None)
        bad.append(f"{_rel(path)}:{stmt.lineno} {type(stmt).__name__}{' ' + name if name else ''}")
    return bad


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def bound_names(path: Path) -> set[str]:
    """Names an __init__.py binds at module level (imports and assignments), and its package's submodules."""
    tree = ast.parse(path.read_text())
    names = {p.stem for p in path.parent.glob("*.py") if p.name != "__init__.py"}
    names |= {p.name for p in path.parent.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in stmt.names}
        elif isinstance(stmt, ast.ImportFrom):
            names |= {a.asname or a.name for a in stmt.names}
        elif isinstance(stmt, ast.Assign):
            names |= {t.id for t in stmt.targets if isinstance(t, ast.Name)}
        elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) and isinstance(stmt.target, ast.Name):
            names.add(stmt.target.id)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
    return names


def declared_all(path: Path) -> list[str] | None:
    for stmt in ast.parse(path.read_text()).body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in stmt.targets):
            return list(ast.literal_eval(stmt.value))
    return None


@functools.cache
def engine_tree() -> Tree:
    return scan(ENGINE_DIR)


def _fmt(edges) -> str:
    return "\n  ".join(str(e) for e in edges)


# ------------------------------------------------------------------- the analysis on synthetic trees

def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "engine" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "engine"


def test_analysis_finds_circles_through_function_imports_and_submodule_from_imports(tmp_path):
    root = _write(tmp_path, {
        "__init__.py": "",
        "kernel/records.py": "X = 1\n",
        "spec/load.py": "def f():\n    from engine.plan import compile\n",   # edge to engine.plan.compile
        "plan/__init__.py": "",
        "plan/compile.py": "from ..spec.load import f\n",                   # relative, back to spec.load
        "store/db.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from engine.execute.x import Y\n"
                       "def g(y: 'Y') -> None: ...\n",
        "execute/x.py": "import engine.store.db\nclass Y: ...\n",
    })
    tree = scan(root)
    found = circles(tree)
    assert [comp for comp, _ in found] == [["engine.plan.compile", "engine.spec.load"]]
    assert {str(e) for e in found[0][1]} == {"engine.spec.load:2 -> engine.plan.compile",
                                            "engine.plan.compile:1 -> engine.spec.load"}
    # The TYPE_CHECKING import is listed apart and makes no circle (store.db <-> execute.x otherwise).
    assert [str(e) for e in tree.edges if e.type_checking] == ["engine.store.db:3 -> engine.execute.x (TYPE_CHECKING)"]
    assert tree.tc_misuse == []
    assert "engine.store.db:3 -> engine.execute.x (TYPE_CHECKING)" not in map(str, upward(tree))
    # spec -> plan (from the function) is upward; plan -> spec is not.
    assert [str(e) for e in upward(tree)] == ["engine.spec.load:2 -> engine.plan.compile"]


def test_analysis_finds_upward_imports_by_name_and_scenario_imports(tmp_path):
    root = _write(tmp_path, {
        "__init__.py": "from engine.study import run\n__all__ = ['run']\n",
        "study.py": "def run(): ...\nCMD = ['python', '-m', 'engine']\n",  # a bare "engine": no edge
        "kernel/registry.py": "from importlib import import_module\nPKG = 'engine.scenarios'\n"
                              "def d(n):\n    import_module(PKG)\n    import_module(f'{PKG}.{n}')\n",
        "kernel/hashing.py": "import importlib\nimportlib.import_module('engine.report.charts')\n",
        "kernel/contracts.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from engine.spec.load import L\n",
        "spec/load.py": "class L: ...\n",
        "report/charts.py": "KNOWN = ('engine.scenarios.coin.report',)\n",
        "scenarios/__init__.py": '"""Plug-ins."""\n',
        "scenarios/coin/__init__.py": "from engine.scenarios.coin import report\n",
        "scenarios/coin/report.py": "from engine import study\nfrom engine.scenarios.dice import x\n",
        "scenarios/dice/__init__.py": "",
        "scenarios/dice/x.py": "from engine.report import charts\n",
    })
    tree = scan(root)
    assert [str(e) for e in upward(tree)] == [
        "engine.kernel.hashing:2 -> engine.report.charts (by name)",
        "engine.report.charts:1 -> engine.scenarios.coin.report (by name)",
        "engine.scenarios.coin.report:1 -> engine.study",
        "engine.scenarios.coin.report:2 -> engine.scenarios.dice.x",
    ]
    # The registry's discovery (the namespace, then whatever is on disk) is no edge to a plug-in.
    # An import for typing only counts in the kernel too.
    assert sorted(str(e) for e in kernel_to_stages(tree)) == [
        "engine.kernel.contracts:3 -> engine.spec.load (TYPE_CHECKING)",
        "engine.kernel.hashing:2 -> engine.report.charts (by name)"]
    assert [str(e) for e in scenario_named_outside(tree)] == [
        "engine.report.charts:1 -> engine.scenarios.coin.report (by name)"]
    assert scenario_strings_outside(tree) == ["engine.report.charts:1 'engine.scenarios.coin.report'"]


def test_analysis_flags_type_checking_names_used_at_runtime_and_logic_in_init(tmp_path):
    root = _write(tmp_path, {
        "plan/__init__.py": '"""Doc."""\nfrom engine.plan.a import A\n__all__ = ["A", "B"]\n__version__ = "1"\n',
        "plan/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from engine.store.db import S\n"
                     "def f(s: S) -> S:\n    return isinstance(s, S)\nclass A: ...\n",
        "store/__init__.py": "import os\nX = os.getcwd()\ndef helper(): ...\n",
        "store/db.py": "class S: ...\n",
    })
    tree = scan(root)
    # No `from __future__ import annotations`: the annotations are evaluated too.
    assert sorted(tree.tc_misuse) == sorted([
        "engine.plan.a:4 annotation S is evaluated at runtime (no `from __future__ import annotations`, not quoted)",
        "engine.plan.a:4 annotation S is evaluated at runtime (no `from __future__ import annotations`, not quoted)",
        "engine.plan.a:5 uses S (a TYPE_CHECKING import) at runtime"])
    assert init_logic(root / "plan" / "__init__.py") == []
    assert [b.split(":", 1)[1] for b in init_logic(root / "store" / "__init__.py")] == ["2 Assign", "3 FunctionDef helper"]
    assert "B" not in bound_names(root / "plan" / "__init__.py") and "A" in bound_names(root / "plan" / "__init__.py")


# ------------------------------------------------------------------------------------- the rules

def test_the_analysis_sees_engine():
    tree = engine_tree()
    assert len(tree.modules) > 50 and len(runtime(tree)) > 200
    assert {part_of(m) for m in tree.modules} >= {"kernel", *STAGES, "checks", "study", "sweep", "cli", "api"}


def test_a_no_import_circles():
    found = circles(engine_tree())
    text = "\n".join(f"circle of {len(c)}: {', '.join(c)}\n  {_fmt(links)}" for c, links in found)
    assert not found, f"{len(found)} import circle(s) among engine's modules:\n{text}"


def test_b_every_module_has_a_place_in_the_order():
    assert not unplaced(engine_tree()), f"modules outside the layout's order (add their part to RANK): {unplaced(engine_tree())}"


def test_b_no_upward_imports():
    bad = upward(engine_tree())
    assert not bad, f"{len(bad)} import(s) to a later part (or to another scenario):\n  {_fmt(bad)}"


def test_type_checking_imports_are_for_annotations_only():
    tree = engine_tree()
    assert not tree.tc_misuse, "\n".join(tree.tc_misuse)


def test_c_kernel_imports_no_stage_not_even_for_typing():
    bad = kernel_to_stages(engine_tree())
    assert not bad, f"the kernel imports stages:\n  {_fmt(bad)}"


def test_c_nothing_outside_a_scenario_imports_it():
    tree = engine_tree()
    assert {part_of(m) for m in tree.modules if part_of(m).startswith("scenarios/")}, "no scenario plug-ins seen"
    bad = scenario_named_outside(tree)
    assert not bad, f"imports of scenario modules from outside engine/scenarios/<name>/:\n  {_fmt(bad)}"
    strings = scenario_strings_outside(tree)
    assert not strings, "scenario modules named by string outside engine/scenarios/<name>/:\n  " + "\n  ".join(strings)


def test_d_no_logic_in_init_files():
    inits = sorted(ENGINE_DIR.rglob("__init__.py"))
    assert inits
    bad = [b for path in inits for b in init_logic(path)]
    assert not bad, "statements other than a docstring, imports, __all__/__version__ in __init__.py files:\n  " + \
        "\n  ".join(bad)


def test_e_every_name_in_an_init_all_is_bound():
    missing = []
    for path in sorted(ENGINE_DIR.rglob("__init__.py")):
        names = declared_all(path)
        if names is not None:
            bound = bound_names(path)
            missing += [f"{path.relative_to(REPO)}: {n}" for n in names if n not in bound]
    assert declared_all(ENGINE_DIR / "__init__.py"), "engine/__init__.py declares no __all__"
    assert not missing, f"__all__ names that the __init__.py does not bind: {missing}"


def test_e_public_api_names_exist():
    import engine

    assert Path(engine.__file__).resolve() == (ENGINE_DIR / "__init__.py").resolve()
    assert engine.__all__ == declared_all(ENGINE_DIR / "__init__.py")
    assert len(set(engine.__all__)) == len(engine.__all__), "duplicates in engine.__all__"
    missing = [n for n in engine.__all__ if not hasattr(engine, n)]
    assert not missing, f"engine.__all__ names that do not exist: {missing}"


def test_e_tests_use_only_the_public_api_of_engine():
    """`from engine import X` and `engine.X` (X no submodule) in tests/ and bench/ name only engine.__all__."""
    public = set(declared_all(ENGINE_DIR / "__init__.py") or [])
    submodules = {p.stem for p in ENGINE_DIR.glob("*.py")} | {p.name for p in ENGINE_DIR.iterdir() if p.is_dir()}
    used: list[tuple[str, str]] = []
    for path in sorted([*(REPO / "tests").rglob("*.py"), *(REPO / "bench").rglob("*.py")]):
        tree = ast.parse(path.read_text())
        plain = any(isinstance(n, ast.Import) and any(a.name == PKG and a.asname is None for a in n.names)
                    for n in ast.walk(tree))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == PKG and node.level == 0:
                used += [(f"{path.relative_to(REPO)}:{node.lineno}", a.name) for a in node.names]
            elif plain and isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == PKG and node.attr not in submodules:
                used.append((f"{path.relative_to(REPO)}:{node.lineno}", node.attr))
    assert used, "no test uses the public API"
    outside = sorted({f"{where} engine.{name}" for where, name in used
                      if name not in public and name not in submodules and not (name.startswith("__") and name.endswith("__"))})
    assert not outside, f"names of `engine` outside engine.__all__: {outside}"
