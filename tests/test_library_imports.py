"""The library (models, augmentation, features, I/O) stands apart from the experiment harness:
it imports nothing from experiments/, data_prep/, the CLI or the experiment config, not even
inside a function, and its modules import each other without cycles (issue 12)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bimodal"
LIBRARY = ("rbm", "dbn", "autoencoder", "persist", "options", "fast", "augment", "features", "io", "device",
           "errors")
HARNESS = ("experiments", "data_prep", "bimodal.cli", "bimodal.config")


def imported_modules(name: str) -> set[str]:
    """Absolute names of every module that ``bimodal/<name>.py`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{name}.py").read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = "bimodal" if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}  # `from . import cli`
    return found


def is_harness(module: str) -> bool:
    return any(module == h or module.startswith(h + ".") for h in HARNESS)


@pytest.mark.parametrize("name", LIBRARY)
def test_library_module_imports_no_harness_code(name):
    assert not {m for m in imported_modules(name) if is_harness(m)}


def test_library_modules_import_each_other_without_cycles():
    graph = {name: {m.split(".")[1] for m in imported_modules(name)
                    if m.startswith("bimodal.") and m.split(".")[1] in LIBRARY} for name in LIBRARY}
    done, on_path = set(), []

    def visit(node):
        assert node not in on_path, f"import cycle: {' -> '.join(on_path[on_path.index(node):] + [node])}"
        if node in done:
            return
        on_path.append(node)
        for nxt in graph[node]:
            visit(nxt)
        on_path.pop()
        done.add(node)

    for name in LIBRARY:
        visit(name)


def test_importing_the_models_loads_no_harness_module():
    code = ("import sys, bimodal, bimodal.features, bimodal.persist, bimodal.options; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('experiments', 'data_prep') "
            "or m in ('bimodal.cli', 'bimodal.config')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"
