"""The package's layers: a module imports only from its own layer or lower ones.

    infrastructure -> data -> nn -> training -> methods -> study -> analysis -> ui, cli, notebooks

`lab.plots` is a leaf: figures only, importing nothing else of the lab.
"""
import ast
from pathlib import Path

LAB = Path(__file__).resolve().parent.parent / "lab"
LAYERS = {
    "errors": 0, "paths": 0, "atomic": 0, "checks": 0, "progress": 0, "device": 0, "provenance": 0, "scales": 0, "__init__": 0,
    "data": 1, "nn": 2, "training": 3, "methods": 4, "study": 5, "analysis": 6, "plots": 6,
    "ui": 7, "cli": 7, "notebooks": 7, "__main__": 7,
}


def _module(path: Path) -> list[str]:
    parts = list(path.relative_to(LAB.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: Path, text: str):
    """(line, imported lab module as parts) for every import of the lab in `text` (the source of
    `path`), nested ones included."""
    package = _module(path) if path.name == "__init__.py" else _module(path)[:-1]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom):
            base = node.module.split(".") if node.module else []
            if node.level:
                base = package[:len(package) - node.level + 1] + base
            if base[:1] != ["lab"]:
                continue
            for alias in node.names:
                # `from lab import study` imports the module lab.study.
                yield node.lineno, base + [alias.name] if len(base) == 1 else base
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "lab":
                    yield node.lineno, alias.name.split(".")


def _layer(parts: list[str]) -> tuple[str, int]:
    top = parts[1] if len(parts) > 1 else "__init__"
    if top not in LAYERS:
        raise AssertionError(f"lab.{top} has no layer: add it to tests/test_layers.py (and the README's list)")
    return top, LAYERS[top]


def _violations(path: Path, text: str) -> list[str]:
    own, rank = _layer(_module(path))
    wrong = []
    for line, target in _imports(path, text):
        other, other_rank = _layer(target)
        if own == "plots" and other != "plots":
            wrong.append(f"{path.relative_to(LAB.parent)}:{line}: plots is a leaf but imports lab.{other}")
        elif other_rank > rank or (other == "plots" and rank < LAYERS["analysis"]):
            wrong.append(f"{path.relative_to(LAB.parent)}:{line}: {own} (layer {rank}) imports "
                         f"{'.'.join(target)} (layer {other_rank})")
    return wrong


def test_every_module_imports_only_its_layer_or_lower():
    files = sorted(LAB.rglob("*.py"))
    assert len(files) > 40
    wrong = [v for path in files for v in _violations(path, path.read_text())]
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_backward_imports():
    assert _violations(LAB / "nn" / "new.py", "from ..methods import METHODS\n")
    assert _violations(LAB / "training" / "new.py", "def f():\n    from lab.study import run_study\n")
    assert _violations(LAB / "plots" / "new.py", "from ..errors import LabError\n")
    assert _violations(LAB / "methods" / "new.py", "from .. import plots\n")
    assert not _violations(LAB / "methods" / "new.py", "from ..training.train import pretrain\nfrom . import runs\n")
