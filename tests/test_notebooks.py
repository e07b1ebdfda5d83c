"""Every notebook runs under papermill at the tiny scale and writes its metrics."""
import json
import math

import nbformat
import pytest

from lab.notebooks import notebook_paths, run_notebooks


def _metrics(out, name):
    return json.loads((out / name).read_text())


def test_notebooks_are_stripped_and_use_python3():
    for path in notebook_paths():
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["kernelspec"]["name"] == "python3", path.name
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} carries outputs"


def test_notebook_00_data(tiny_corpus, tmp_path):
    run_notebooks("tiny", tmp_path, ["00"], cell_timeout=600)
    m = _metrics(tmp_path, "00_data.json")
    assert len(m["domains"]) >= 8
    assert m["remaining_overlap_lines"] == 0
    for domain, splits in m["tokens"].items():
        assert all(n > 0 for n in splits.values()), domain
    assert all(math.isfinite(v) and v > 1 for v in m["chars_per_token"].values())
    for fig in ("00_tokens.png", "00_chars_per_token.png", "00_sources.png"):
        assert (tmp_path / fig).stat().st_size > 1000
