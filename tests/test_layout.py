"""The shape of the tree: no import cycle, layers point down, no borrowed privates, short files.

The walker reads every module of ``nas``, ``evaluators`` and ``search_spaces`` with ``ast``
(as a linter does, nothing is imported) and collects every ``import`` statement, including
those inside functions: a lazy import still ties two modules together. The rules:

* no import cycle between modules (a package's ``__init__`` counts as its own module; that
  importing ``a.b`` first runs ``a/__init__`` is not an edge, as for any import linter);
* layers point one way, ``nas`` -> ``evaluators`` -> ``search_spaces``, and only
  ``nas/backends/`` imports ``optuna`` or ``ray`` (``STYLE.md``);
* no module imports another module's ``_private`` name; a ``_private`` *module* may be
  imported only from inside its own package (Optuna's ``_sampler.py`` style);
* no source file is longer than :data:`MAX_LINES` lines;
* every module has a docstring that says what it is for and what it must not import.

``python tests/test_layout.py [ROOT]`` prints the violations of another checkout (exit 1 when
there are any).
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("search_spaces", "evaluators", "nas")  # lowest layer first
MAX_LINES = 600
#: Third-party packages only these module prefixes may import.
RESTRICTED = {"optuna": ("nas.backends",), "ray": ("nas.backends",)}
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    is_package: bool
    #: (imported module, imported name or None, line number)
    imports: list[tuple[str, str | None, int]] = field(default_factory=list)


def _module_name(root: Path, path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def walk(root: Path) -> dict[str, Module]:
    """Every module of :data:`PACKAGES` under ``root`` with the imports it makes."""
    modules: dict[str, Module] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            name, is_package = _module_name(root, path)
            text = path.read_text()
            mod = Module(name, path, len(text.splitlines()), is_package)
            package = name if is_package else name.rpartition(".")[0]
            for node in ast.walk(ast.parse(text, str(path))):
                if isinstance(node, ast.Import):
                    mod.imports += [(a.name, None, node.lineno) for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:  # relative: from .x import y
                        anchor = package.split(".")
                        anchor = anchor[: len(anchor) - node.level + 1]
                        base = ".".join([*anchor, base] if base else anchor)
                    mod.imports += [(base, a.name, node.lineno) for a in node.names]
            modules[name] = mod
    return modules


def edges(modules: dict[str, Module]) -> dict[str, set[str]]:
    """Module -> the first-party modules it imports (``from pkg import mod`` names ``pkg.mod``)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for m in modules.values():
        for target, name, _ in m.imports:
            if name is not None and f"{target}.{name}" in modules:
                target = f"{target}.{name}"
            if target in modules and target != m.name:
                graph[m.name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def violations(root: Path) -> list[str]:
    """Every broken rule under ``root``, one line each (empty when the tree is in shape)."""
    modules = walk(root)
    out: list[str] = []
    for component in cycles(edges(modules)):
        out.append("import cycle: " + " <-> ".join(component))
    rank = {p: i for i, p in enumerate(PACKAGES)}
    for m in modules.values():
        rel = m.path.relative_to(root)
        if m.lines > MAX_LINES:
            out.append(f"{rel}: {m.lines} lines (at most {MAX_LINES})")
        here = m.name.split(".")[0]
        for target, name, line in m.imports:
            top = target.split(".")[0]
            where = f"{rel}:{line}"
            if top in rank and rank[top] > rank[here]:
                out.append(
                    f"{where}: {here} imports {target} (layers: nas -> evaluators -> search_spaces)"
                )
            allowed = RESTRICTED.get(top)
            if allowed and not any(m.name == p or m.name.startswith(p + ".") for p in allowed):
                out.append(f"{where}: {m.name} imports {top} (only {', '.join(allowed)} may)")
            if top not in rank:
                continue
            full = f"{target}.{name}" if name is not None else target
            is_module = full in modules
            # A private module is for its own package: search_spaces.ops._base is for ops/*.
            parts = full.split(".") if is_module else target.split(".")
            for i, part in enumerate(parts):
                if part.startswith("_") and not part.startswith("__"):
                    owner = ".".join(parts[:i])
                    if not (m.name == owner or m.name.startswith(owner + ".")):
                        out.append(
                            f"{where}: {m.name} imports the private module "
                            f"{'.'.join(parts[: i + 1])}"
                        )
                    break
            if (
                name is not None
                and not is_module
                and name.startswith("_")
                and not name.startswith("__")
                and target != m.name
            ):
                out.append(f"{where}: {m.name} imports {target}'s private name {name}")
    return sorted(out)


# -- the tests ----------------------------------------------------------------------------------
def test_the_tree_has_no_cycle_no_upward_import_no_borrowed_private_and_no_long_file():
    assert violations(ROOT) == []


#: Modules whose docstrings are another engineer's to edit (the operators are being optimised).
NOT_OURS = ("search_spaces.ops",)
_BOUNDARY = re.compile(r"must not (be )?import|never|[Nn]othing (here|in [^.]*) (may )?imports?")


def test_every_module_says_what_it_is_for_and_what_it_must_not_import():
    missing, silent = [], []
    for m in walk(ROOT).values():
        doc = " ".join((ast.get_docstring(ast.parse(m.path.read_text())) or "").split())
        rel = str(m.path.relative_to(ROOT))
        if not doc:
            missing.append(rel)
        elif not _BOUNDARY.search(doc) and not m.name.startswith(NOT_OURS):
            silent.append(rel)
    assert missing == [] and silent == []


def test_the_readme_layout_names_every_module():
    text = (ROOT / "README.md").read_text()
    block = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    tree = block.split("```")[1]  # the map, one line per module or folder
    named = {line.split()[0] for line in tree.splitlines() if line.strip()}
    absent = [
        str(m.path.relative_to(ROOT))
        for m in walk(ROOT).values()
        if (m.path.parent.name + "/" if m.is_package else m.path.name) not in named
    ]
    assert absent == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir(exist_ok=True)
        (tmp_path / pkg / "__init__.py").write_text('"""x"""\n')
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_walker_finds_each_kind_of_violation(tmp_path):
    root = _tree(
        tmp_path,
        {
            # a cycle through a lazy import, as nas.search <-> nas.backends.ray_backend was
            "nas/a.py": "from nas.b import run\n",
            "nas/b.py": "def run():\n    from nas import a\n",
            "nas/c.py": "from nas.a import _helper\nimport optuna\n",
            "nas/backends/__init__.py": "",
            "nas/backends/d.py": "import optuna\nfrom . import e\n",
            "nas/backends/e.py": "from . import d\n",
            "search_spaces/up.py": "from evaluators.cost import get_cost_model\n",
            "search_spaces/ops/__init__.py": "from search_spaces.ops import _base\n",
            "search_spaces/ops/_base.py": "X = 1\n",
            "search_spaces/ops/conv.py": "from search_spaces.ops._base import X\n",
            "evaluators/long.py": "x = 1\n" * (MAX_LINES + 1),
            "evaluators/peek.py": "from search_spaces.ops._base import X\n",
        },
    )
    found = violations(root)
    assert found == [
        f"evaluators/long.py: {MAX_LINES + 1} lines (at most {MAX_LINES})",
        "evaluators/peek.py:1: evaluators.peek imports the private module search_spaces.ops._base",
        "import cycle: nas.a <-> nas.b",
        "import cycle: nas.backends.d <-> nas.backends.e",
        "nas/c.py:1: nas.c imports nas.a's private name _helper",
        "nas/c.py:2: nas.c imports optuna (only nas.backends may)",
        "search_spaces/up.py:1: search_spaces imports evaluators.cost (layers: nas -> evaluators "
        "-> search_spaces)",
    ]


if __name__ == "__main__":
    problems = violations(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
    print("\n".join(problems) or "no violations")
    sys.exit(1 if problems else 0)
