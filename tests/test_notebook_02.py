"""Notebook 02 (domains over the generic clusters) runs at the tiny scale and writes sane metrics."""
import json
import math

from lab.data.cluster import default_ks
from lab.notebooks import run_notebooks


def test_notebook_02_domains(tiny_corpus, tmp_path):
    run_notebooks("tiny", tmp_path, ["02"], cell_timeout=600, parameters={"per_source": 50})
    m = json.loads((tmp_path / "02_domains.json").read_text())
    ks = list(default_ks("tiny"))
    assert m["ks"] == ks and m["generic_windows"] > 1000 and len(m["sources"]) >= 8
    assert set(m["entropy_bits"]) == set(tiny_corpus.domains) == set(m["top_share"])
    for domain in tiny_corpus.domains:
        for k in ks:
            h, top = m["entropy_bits"][domain][str(k)], m["top_share"][domain][str(k)]
            assert 0 <= h <= math.log2(k) + 1e-9 and 1 / k - 1e-9 <= top <= 1, (domain, k)
    # A finer clustering spreads the domains over more clusters. Not each one: k-means fits each k
    # afresh, so the finer clustering is not a refinement of the coarser and one domain can fall
    # into a single fine cluster.
    mean_entropy = {k: sum(m["entropy_bits"][d][str(k)] for d in tiny_corpus.domains) for k in (ks[0], ks[-1])}
    assert mean_entropy[ks[-1]] > mean_entropy[ks[0]]
    assert m["generic_entropy_bits"][str(ks[-1])] > m["generic_entropy_bits"][str(ks[0])]
    for k in ks:
        assert 0 < m["purity"][str(k)] <= 1
        # The generic corpus is the mixture every domain draws from: the most spread of all.
        assert m["generic_entropy_bits"][str(k)] >= max(m["entropy_bits"][d][str(k)] for d in tiny_corpus.domains)
    for fig in ("02_projection.png", "02_source_clusters.png", "02_domain_heatmap.png", "02_entropy_by_k.png"):
        assert (tmp_path / fig).stat().st_size > 1000
