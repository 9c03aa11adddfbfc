"""The layout's rules (../shared/DESIGN.md, "Folders and who owns what"), checked on the source:
the import graph of the product has no cycle (lazy imports count), each folder imports only what it
may, nothing in the product imports tests/, and every file says first what it owns."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("cluster", "holdem", "demo")
# The profile language and submission: what runs inside the allocation never needs them.
SUBMIT_SIDE = ("cluster.profile", "cluster.stages", "cluster.plan", "cluster.submit", "cluster.slurm", "cluster.sbatch_render",
               "cluster.doctor", "cluster.sweep")
# What holdem/ may take from cluster/: shared leaves only.
CLUSTER_LEAVES = ("cluster.outputs", "cluster.errors", "cluster.secrets", "cluster.cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_files() -> list[Path]:
    return sorted(p for top in PRODUCT for p in (ROOT / top).rglob("*.py"))


def imports_of(path: Path) -> set[str]:
    """Every module an import statement of the file names, at any depth (lazy imports too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in product_files()}
    return {name: {m for m in imports_of(path) if m in files and m != name} for name, path in files.items()}


def test_the_product_import_graph_has_no_cycle(graph):
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def _violations(graph: dict[str, set[str]], who: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted(f"{name} imports {dep}" for name, deps in graph.items() if name == who or name.startswith(who + ".")
                  for dep in deps if dep.startswith(forbidden) and not dep.startswith(allowed))


def test_the_launcher_needs_neither_the_profile_language_nor_holdem(graph):
    assert _violations(graph, "cluster.launcher", (*SUBMIT_SIDE, "holdem", "demo")) == []


def test_cluster_never_imports_holdem_or_the_demo(graph):
    assert _violations(graph, "cluster", ("holdem", "demo")) == []


def test_holdem_takes_only_shared_leaves_from_cluster(graph):
    assert _violations(graph, "holdem", ("cluster", "demo"), allowed=CLUSTER_LEAVES) == []


def test_the_product_never_imports_tests():
    bad = sorted(f"{module_name(p)} imports {m}" for p in product_files() for m in imports_of(p)
                 if m == "tests" or m.startswith("tests."))
    assert bad == []
    runners = [*ROOT.glob("profiles/*.yaml"), *ROOT.glob("scripts/sbatch/*"),
               *(p for p in ROOT.glob("scripts/*.sh") if p.name != "ci-tests.sh")]
    assert [str(p) for p in runners if "tests." in p.read_text() or "tests/" in p.read_text()] == []


def test_every_product_file_says_first_what_it_owns():
    missing = [str(p.relative_to(ROOT)) for p in product_files()
               if p.stat().st_size and ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) is None]
    assert missing == []


def test_the_cluster_top_level_stays_small():
    """Modules of cluster/ itself (packages: launcher/, profile/, stages/); `launch` and `stage_job`
    are compatibility entries for jobs submitted before the layout step."""
    modules = sorted(p.stem for p in (ROOT / "cluster").glob("*.py")
                     if p.stem not in ("__init__", "launch", "stage_job"))
    assert len(modules) <= 16, modules


def test_old_pickled_stage_functions_still_unpickle():
    """Jobs submitted before the launcher became a package pickled `cluster.stage_job.TrainCommand`."""
    import pickle

    from cluster.launcher.stage import TrainCommand

    old = pickle.dumps(TrainCommand("train", ("true",), {}, max_restarts=1), protocol=0).replace(
        b"cluster.launcher.stage", b"cluster.stage_job")
    assert b"cluster.stage_job" in old
    assert pickle.loads(old) == TrainCommand("train", ("true",), {}, max_restarts=1)
