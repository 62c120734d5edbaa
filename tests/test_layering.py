"""The library stands apart from the harness: bimodal's models, training, features, evaluation and
I/O import nothing from ``experiments``, ``data_prep`` or the CLI, data_prep nothing from
``experiments``, and no project module imports itself through a cycle (lazy imports inside
functions included)."""
import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bimodal", "data_prep", "experiments", "benchmarks")
# the command line is the harness's entry point, so it may import everything
HARNESS_IN_BIMODAL = {"bimodal.cli", "bimodal.__main__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``name`` imports anywhere in its file (``from pkg import mod`` counts as ``pkg.mod``)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # a name inside a module → the module
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def test_the_library_imports_nothing_from_the_harness(graph):
    assert "bimodal.rbm" in graph and "bimodal.persist" in graph  # the walk found the modules
    bad = {m: sorted(t for t in deps if t.split(".")[0] in ("experiments", "data_prep", "benchmarks")
                     or t in HARNESS_IN_BIMODAL)
           for m, deps in graph.items() if m.startswith("bimodal") and m not in HARNESS_IN_BIMODAL}
    assert {m: d for m, d in bad.items() if d} == {}


def test_data_prep_imports_nothing_from_experiments(graph):
    bad = {m: sorted(t for t in deps if t.split(".")[0] in ("experiments", "benchmarks") or t in HARNESS_IN_BIMODAL)
           for m, deps in graph.items() if m.startswith("data_prep")}
    assert {m: d for m, d in bad.items() if d} == {}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles(graph):
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_planted_cycle(tmp_path):
    # relative and lazy (in-function) imports are resolved: a planted a -> b -> a cycle is found
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n")
    (pkg / "b.py").write_text("def g():\n    from pkg import a\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    known = {"pkg", "pkg.a", "pkg.b", "pkg.c"}
    graph = {m: _imports(m, pkg / f"{m.split('.')[-1]}.py" if m != "pkg" else pkg / "__init__.py", known)
             for m in known}
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"} and graph["pkg.c"] == {"pkg.a"}
    assert _cycles(graph) == [["pkg.a", "pkg.b"]]


def test_models_work_with_the_harness_blocked(tmp_path):
    """Import the model modules with ``experiments`` and ``data_prep`` unimportable, then train,
    save, load and encode: the library needs neither."""
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("experiments", "data_prep", "benchmarks") or name == "bimodal.cli":
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        sys.path.insert(0, {str(ROOT)!r})
        import numpy as np
        import bimodal, bimodal.rbm, bimodal.dbn, bimodal.autoencoder, bimodal.augment, bimodal.features
        import bimodal.persist, bimodal.io, bimodal.classifiers, bimodal.evaluation, bimodal.gram, bimodal.cca
        import bimodal.noise, bimodal.folds, bimodal.options
        from bimodal.persist import Persistable
        rng = np.random.default_rng(0)
        a = rng.standard_normal((120, 6)).astype(np.float32)
        v = rng.standard_normal((120, 5)).astype(np.float32)
        dbn = bimodal.BimodalDBN([6, 8], [5, 8], 7, device="cpu", seed=0).fit(a, v, epochs=2, batch_size=40)
        dae = bimodal.BimodalAutoencoder.from_dbn(dbn, device="cpu", seed=0).fit(a, v, epochs=2, batch_size=40)
        dae.save({str(tmp_path / 'dae.pt')!r})
        back = Persistable.load({str(tmp_path / 'dae.pt')!r}, device="cpu")
        assert type(back).__name__ == "BimodalAutoencoder"
        assert np.array_equal(back.encode(video=v), dae.encode(video=v))
        utt = np.repeat(np.arange(12), 10)
        feats = bimodal.features.pool_slices(dae.encode(video=v), utt, 12, (1, 3))
        assert feats.shape == (12, 28), feats.shape
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("experiments", "data_prep"))
        assert loaded == [], loaded
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
