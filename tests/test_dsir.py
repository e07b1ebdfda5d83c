"""SLM-is with DSIR (data-selection): the stream it reads is closer to the domain by DSIR's own n-gram
measure, at the same budget as cluster resampling, on a built-in domain and on a user's folder."""
import numpy as np
import pytest

from lab import methods
from lab.data import dsir
from lab.data.cluster import corpus_decode
from lab.data.corpus import load_corpus, load_domain
from lab.errors import LabError
from lab.methods import importance as slm_is
from lab.training.train import train_config

SCALE = "tiny"


@pytest.fixture(scope="module")
def spec_flops(tiny_corpus):
    return train_config("slm", SCALE).pretrain_flops / 256


@pytest.fixture(scope="module")
def user_folder(tiny_corpus, tmp_path_factory):
    """A user's folder of plain text: the tiny corpus's medicine training documents, one file each."""
    folder = tmp_path_factory.mktemp("clinic")
    for i, doc in enumerate(tiny_corpus.documents("medicine", "train")):
        (folder / f"note{i:04d}.txt").write_text(doc.text, encoding="utf-8")
    return str(folder)


def test_dsir_stream_is_closer_to_the_domain_than_the_generic_corpus(tiny_corpus):
    n = tiny_corpus.scale.set_tokens[1]
    rs = slm_is.stream("medicine", n, SCALE, importance="dsir")
    sel = rs.selection
    assert 0 < len(rs.starts) <= dsir.MAX_SHARE * len(sel.log_weights)
    assert sel.selected_kl < 0.8 * sel.generic_kl
    # Measured again on the windows the sampler actually draws, not on the selection's own record.
    decode, ctx = corpus_decode(tiny_corpus), tiny_corpus.scale.context
    sampler = rs.sampler(64, seed=1)
    offsets = np.concatenate([sampler.offsets() for _ in range(20)])
    assert np.isin(offsets, rs.starts).all()
    drawn = [decode(rs.generic[o:o + ctx + 1].tolist()) for o in offsets]
    _, domain_texts = dsir.window_texts(load_domain("medicine", SCALE).set(n), ctx, decode)
    target = dsir.ngram_counts(domain_texts)
    generic_sample = np.random.default_rng(1).choice(len(sel.log_weights), len(offsets), replace=False)
    random_texts = [decode(rs.generic[o:o + ctx + 1].tolist())
                    for o in slm_is.window_starts(len(rs.generic), ctx)[generic_sample]]
    assert dsir.ngram_kl(target, dsir.ngram_counts(drawn)) < dsir.ngram_kl(target, dsir.ngram_counts(random_texts))
    # DSIR's log-likelihood ratio: the chosen windows score above the corpus on average.
    chosen = np.isin(slm_is.window_starts(len(rs.generic), ctx), rs.starts)
    assert sel.log_weights[chosen].mean() > sel.log_weights.mean()
    # Cached and reproducible.
    assert np.array_equal(slm_is.stream("medicine", n, SCALE, importance="dsir").starts, rs.starts)


def test_a_user_folder_works_with_both_importances_at_the_same_budget(user_folder, spec_flops, one_thread):
    n = load_corpus(SCALE).scale.set_tokens[0]
    rows = {imp: methods.specialize("slm-is", user_folder, n, SCALE, progress=False, importance=imp,
                                    spec_flops=spec_flops) for imp in ("clusters", "dsir")}
    clusters, by_dsir = rows["clusters"], rows["dsir"]
    assert clusters.cache_key != by_dsir.cache_key and clusters["domain"] == by_dsir["domain"]
    assert clusters["extra"]["checkpoint_path"] != by_dsir["extra"]["checkpoint_path"]
    for row in rows.values():
        assert np.isfinite(row["ppl_after"]) and row["ppl_after"] < row["ppl_before"]
        assert row["extra"]["is_flops"] == pytest.approx(spec_flops, rel=0.02)  # the same budget
    e = by_dsir["extra"]
    assert e["importance"] == "dsir" and clusters["extra"]["importance"] == "clusters"
    assert e["selected_ngram_kl"] < e["generic_ngram_kl"] and e["ngram_kl_reduction"] > 0


def test_bad_importance_values_are_one_line(tiny_corpus):
    n = tiny_corpus.scale.set_tokens[0]
    with pytest.raises(LabError, match="slm-is: --importance 'bm25': choose one of clusters, dsir"):
        methods.specialize("slm-is", "medicine", n, SCALE, importance="bm25")
    with pytest.raises(LabError, match="importance 'dsir' selects by hashed n-grams and takes neither") as e:
        methods.specialize("slm-is", "medicine", n, SCALE, importance="dsir", k=4)
    assert "\n" not in str(e.value)
