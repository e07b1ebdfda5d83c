"""Every notebook runs under papermill at the tiny scale and writes its metrics."""
import json
import math

import nbformat

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


def test_notebook_01_pretraining(tiny_corpus, tmp_path):
    run_notebooks("tiny", tmp_path, ["01"], cell_timeout=900,
                  parameters={"domains": "legal,code,medicine", "cost_axis": "hours"})
    m = _metrics(tmp_path, "01_pretraining.json")
    for model, ppl in m["generic_ppl"].items():
        assert all(math.isfinite(p) for p in ppl) and ppl[-1] < ppl[0], model
    table = m["table4"]
    for domain in ("legal", "code", "medicine"):
        row = table[domain]
        for model, generic in (("SLM", "generic only"), ("LLM", "LLM generic only")):  # Table 4 with its LLM
            finetuned = [row[f"{model} {n:,}"] for n in (2_000, 16_000, 128_000)]
            assert all(v < row[generic] for v in finetuned), (domain, model, row)
            assert finetuned[-1] < finetuned[0], (domain, model)
    assert set(table) == {"legal", "code", "medicine", "average"}
    assert (tmp_path / "01_generic_curves.png").exists() and (tmp_path / "01_table4.png").exists()
    # Figure 14: LoRA (rank 8) trains fewer weights than full fine-tuning, and still learns the domains.
    lora = m["fig14_lora"]["slm"]
    full, low = lora["full"], lora["lora r=8"]
    assert set(full["ppl_after"]) == set(low["ppl_after"]) == {"2000", "16000", "128000"}
    assert all(low["trained_params"][n] < full["trained_params"][n] / 2 for n in full["trained_params"])
    assert all(math.isfinite(p) and 1 < p < table["average"]["generic only"] for p in low["ppl_after"].values())
    assert (tmp_path / "01_lora.png").stat().st_size > 1000
