"""Embeddings, k-means, the cluster cache and domain histograms, on synthetic topics.

The synthetic corpus is a word-level "tokenizer" over four disjoint topic
vocabularies plus shared filler words. Generic documents pick a topic
uniformly; the domain "mixed" is drawn the same way, the domain "peaked" is
almost all topic 2.
"""
import importlib.util
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lab.data import cluster, embed
from lab.analysis.domains import describe_domains
from lab.data.cluster import Clustering, cluster_corpus, fit_clustering
from lab.errors import LabError
from lab.training.importance import domain_importance_sampler

CONTEXT = 32
TOPICS = 4
WORDS = ["<|endoftext|>"] + [f"filler{i}" for i in range(30)] + [f"topic{t}word{i}" for t in range(TOPICS) for i in range(60)]


def topic_tokens(rng, n_docs, topic_p, doc_len=256):
    """Documents of one topic each, topics drawn from `topic_p`; topic words Zipf-distributed."""
    zipf = 1.0 / np.arange(1, 61)
    zipf /= zipf.sum()
    docs = []
    for t in rng.choice(TOPICS, size=n_docs, p=topic_p):
        topic = 31 + 60 * t + rng.choice(60, size=doc_len, p=zipf)
        filler = 1 + rng.integers(0, 30, size=doc_len)
        docs += [np.where(rng.random(doc_len) < 0.7, topic, filler), [0]]
    return np.concatenate(docs).astype(np.uint16)


def decode(ids):
    return " ".join(WORDS[i] for i in ids)


class FakeCorpus:
    """The slice of lab.data.corpus.Corpus that clustering reads."""

    def __init__(self, root, seed=0, generic_docs=300):
        rng = np.random.default_rng(seed)
        self.root = Path(root)
        self.scale = SimpleNamespace(name="tiny", context=CONTEXT, set_tokens=(320, 8_000))
        self.tokenizer = SimpleNamespace(decode=decode)
        self.domains = ["mixed", "peaked"]
        self._streams = {
            "generic": topic_tokens(rng, generic_docs, [0.25] * 4),
            "mixed": topic_tokens(rng, 40, [0.25] * 4),
            "peaked": topic_tokens(rng, 40, [0.02, 0.02, 0.94, 0.02]),
        }

    def tokens(self, domain, split):
        return self._streams[domain]

    def train_set(self, domain, n_tokens):
        return self._streams[domain][:n_tokens]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return FakeCorpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def clustering(corpus):
    return cluster_corpus(corpus, ks=(4, 16), dim=32)


def test_domain_histograms(corpus, clustering):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 320-token sets are sparse at k=16, on purpose
        hist, summary = describe_domains(corpus, clustering)
    sums = hist.groupby(["domain", "set_tokens", "k"])["share"].sum()
    assert np.allclose(sums, 1.0)
    assert set(summary["domain"]) == {"generic", "mixed", "peaked"}
    row = summary.set_index(["domain", "set_tokens", "k"])
    generic = hist[(hist.domain == "generic") & (hist.k == 4)]["share"].to_numpy()
    mixed = hist[(hist.domain == "mixed") & (hist.k == 4) & (hist.set_tokens == 8_000)]["share"].to_numpy()
    assert 0.5 * np.abs(generic - mixed).sum() < 0.15  # total variation: same distribution
    assert row.loc[("peaked", 8_000, 4), "top_share"] > 0.85
    assert row.loc[("peaked", 8_000, 4), "entropy_nats"] < 0.5 * row.loc[("mixed", 8_000, 4), "entropy_nats"]
    assert np.isclose(row.loc[("mixed", 8_000, 4), "entropy_bits"], row.loc[("mixed", 8_000, 4), "entropy_nats"] / np.log(2))
    # 320 tokens are 9 windows of 32: fewer than 16 clusters, so flagged.
    assert row.loc[("peaked", 320, 16), "sparse"] and not row.loc[("peaked", 320, 4), "sparse"]


def test_k_means_finds_the_topics(corpus, clustering):
    # Each k=4 cluster is one topic: windows of a single-topic document share a cluster.
    stream = corpus.tokens("generic", "train")
    ids = clustering.generic_ids[4]
    starts = np.arange(len(ids)) * CONTEXT
    topic = [np.bincount((stream[s:s + CONTEXT + 1][stream[s:s + CONTEXT + 1] > 30] - 31) // 60, minlength=4).argmax()
             for s in starts]
    purity = sum(np.bincount(np.array(topic)[ids == c]).max() for c in range(4) if (ids == c).any()) / len(ids)
    assert purity > 0.9


def test_assignment_is_deterministic_and_needs_no_refit(corpus, clustering, monkeypatch):
    texts = [decode(w) for w in np.split(corpus.tokens("peaked", "train")[:3200], 100)]
    first = clustering.assign_texts(texts)
    monkeypatch.setattr(embed.TfidfEmbedder, "fit", lambda *a: pytest.fail("refit while assigning"))
    again = Clustering.load(clustering.root).assign_texts(texts)
    for k in clustering.ks:
        assert np.array_equal(first[k], again[k])
    # The generic windows follow the same nearest-centroid rule as new text.
    generic = corpus.tokens("generic", "train")
    tokens_ids = clustering.assign_tokens(generic[:CONTEXT * 50 + 1], cluster.corpus_decode(corpus))
    assert np.array_equal(tokens_ids[16], clustering.generic_ids[16][:50])


def test_cache_is_reused(corpus, clustering, monkeypatch):
    monkeypatch.setattr(cluster, "fit_clustering", lambda *a, **k: pytest.fail("cache not reused"))
    again = cluster_corpus(corpus, ks=(4, 16), dim=32)
    assert again.key == clustering.key
    assert np.array_equal(again.centroids[16], clustering.centroids[16])
    assert cluster_corpus(corpus, ks=(4,), dim=32).ks == (4,)
    # Domain assignments are cached too: a second description embeds nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        describe_domains(corpus, again)
    monkeypatch.setattr(embed.TfidfEmbedder, "embed", lambda *a: pytest.fail("domain windows re-embedded"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        describe_domains(corpus, again)


def test_stale_cache_is_rebuilt(tmp_path):
    first = cluster_corpus(FakeCorpus(tmp_path, seed=0, generic_docs=120), ks=(4,), dim=32)
    with pytest.warns(UserWarning, match="tokens_sha256"):
        second = cluster_corpus(FakeCorpus(tmp_path, seed=1, generic_docs=120), ks=(4,), dim=32)
    assert second.key["tokens_sha256"] != first.key["tokens_sha256"]
    with pytest.warns(UserWarning, match=r"lacks k=\[8\]"):
        third = cluster_corpus(FakeCorpus(tmp_path, seed=1, generic_docs=120), ks=(8,), dim=32)
    assert third.ks == (8,) and Clustering.load(third.root).ks == (4, 8)


def test_interrupted_rebuild_keeps_the_old_cache(tmp_path, monkeypatch):
    corpus = FakeCorpus(tmp_path, generic_docs=120)
    first = cluster_corpus(corpus, ks=(4,), dim=32)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cluster, "fit_kmeans", crash)
    with pytest.raises(KeyboardInterrupt):
        cluster_corpus(corpus, ks=(4,), refresh=True, dim=32)
    monkeypatch.undo()
    path = tmp_path / "clusters" / "tfidf"
    assert sorted(p.name for p in path.parent.iterdir()) == ["tfidf"]  # no half-built folder left
    assert np.array_equal(Clustering.load(path).centroids[4], first.centroids[4])


def test_k_is_capped_by_the_number_of_windows():
    with pytest.warns(UserWarning, match=r"skipping k=\[64\]"):
        assert cluster.usable_ks((4, 16, 64), n_windows=500) == (4, 16)
    with pytest.raises(LabError, match="too few"):
        cluster.usable_ks((16,), n_windows=100)


def test_few_domain_windows_warn(corpus, clustering):
    with pytest.warns(UserWarning, match=r"peaked: 9 windows for k=16.*use k=4"):
        hist = clustering.histogram(corpus.train_set("peaked", 320), decode, 16, name="peaked")
    assert np.isclose(hist.sum(), 1.0)
    with pytest.raises(LabError, match="peaked"):
        clustering.histogram(corpus.train_set("peaked", 20), decode, 4, name="peaked")


def test_domain_importance_sampler_matches_the_domain(corpus, clustering):
    sampler = domain_importance_sampler(corpus, clustering, "peaked", 8_000, 4, batch_size=4000, seed=1)
    drawn = clustering.generic_ids[4][sampler.offsets() // CONTEXT]
    target = clustering.histogram(corpus.train_set("peaked", 8_000), decode, 4)
    assert np.abs(np.bincount(drawn, minlength=4) / len(drawn) - target).max() < 0.03


def test_cluster_sampler_draws_one_cluster(corpus, clustering):
    ids = clustering.generic_ids[16]
    sampler = cluster.cluster_sampler(corpus.tokens("generic", "train"), ids, 3, batch_size=256, context=CONTEXT)
    assert set(ids[sampler.offsets() // CONTEXT]) == {3}
    x, y = sampler.next()
    assert x.shape == (256, CONTEXT) and (x[:, 1:] == y[:, :-1]).all()


def test_end_of_text_is_not_a_word(corpus):
    eot = np.flatnonzero(corpus.tokens("generic", "train") == 0)[0]
    text = cluster.corpus_decode(corpus)(corpus.tokens("generic", "train")[eot - 2:eot + 3].tolist())
    assert "endoftext" not in text and "\n\n" in text


def test_tfidf_projection_matches_scikit_learn():
    from sklearn.feature_extraction.text import TfidfVectorizer

    rng = np.random.default_rng(0)
    texts = [decode(topic_tokens(rng, 1, [0.25] * 4, doc_len=40)) for _ in range(60)]
    emb = embed.TfidfEmbedder(dim=8, min_df=1, max_df=1.0).fit(texts)
    reference = TfidfVectorizer(token_pattern=emb._token_pattern, sublinear_tf=True, vocabulary=list(emb.terms))
    reference.fit(texts)
    assert np.allclose(emb._tfidf(texts).toarray(), reference.transform(texts).toarray(), atol=1e-6)
    assert np.allclose(np.linalg.norm(emb.embed(texts), axis=1), 1.0, atol=1e-5)


def test_unknown_method():
    with pytest.raises(LabError, match="tfidf, sbert"):
        embed.make_embedder("word2vec")


HAS_SBERT = importlib.util.find_spec("sentence_transformers") is not None


@pytest.mark.skipif(not HAS_SBERT, reason=f"sentence-transformers not installed: {embed.SBERT_INSTALL}")
def test_sbert_embeds_and_clusters(tmp_path):
    law = ["The licensee shall indemnify the licensor against all claims.",
           "This agreement is governed by the laws of the State of New York.",
           "The court held that the contract was void for lack of consideration.",
           "Any warranty of merchantability is hereby disclaimed.",
           "The tenant must pay rent on the first day of each month.",
           "The defendant appealed the judgment of the district court.",
           "Redistribution in binary form must reproduce the copyright notice.",
           "The parties agree to settle disputes through binding arbitration.",
           "A breach of this clause terminates the licence automatically.",
           "The plaintiff seeks damages for breach of fiduciary duty."]
    food = ["Whisk the eggs with sugar until pale and fluffy.",
            "Roast the vegetables in a hot oven for forty minutes.",
            "Simmer the tomato sauce with garlic and fresh basil.",
            "Knead the bread dough and let it rise for an hour.",
            "Season the steak with salt and pepper before grilling.",
            "Fold the flour gently into the chocolate batter.",
            "Serve the soup with a swirl of cream and chopped chives.",
            "Toast the pine nuts in a dry pan until golden.",
            "Marinate the chicken in yogurt and spices overnight.",
            "Bake the pie until the crust is crisp and brown."]
    emb = embed.make_embedder("sbert").fit(law + food)
    x = emb.embed(law + food)
    assert x.shape == (20, 384) and np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    centroids = cluster.fit_kmeans(x, 2, seed=0)
    clustering = Clustering(emb, {2: centroids}, {2: cluster.nearest(x, centroids)}, CONTEXT)
    ids = clustering.generic_ids[2]
    assert len(set(ids[:10])) == 1 and len(set(ids[10:])) == 1 and ids[0] != ids[10]
    # Saved and reloaded, the embedder gives the same clusters to new text.
    emb.save(tmp_path / "embedder.npz")
    reloaded = Clustering(embed.load_embedder(tmp_path / "embedder.npz"), {2: centroids}, {}, CONTEXT)
    new = ["The licence grants a non-exclusive right to use the software.", "Chop the onions finely."]
    assert np.array_equal(reloaded.assign_texts(new)[2], clustering.assign_texts(new)[2])
    assert reloaded.assign_texts(new)[2].tolist() == [ids[0], ids[10]]


@pytest.mark.skipif(not HAS_SBERT, reason=f"sentence-transformers not installed: {embed.SBERT_INSTALL}")
def test_sbert_missing_model_is_explained():
    with pytest.raises(LabError, match="all-MiniLM-L6-v2"):
        embed.load_sentence_transformer("no-such-org/no-such-model")


def test_fit_clustering_without_corpus(corpus):
    # The functional core takes a token array and a decode function; nothing else.
    c = fit_clustering(corpus.tokens("generic", "train")[:CONTEXT * 400 + 1], decode, CONTEXT, ks=(4,), dim=32)
    assert c.ks == (4,) and len(c.generic_ids[4]) == 400 and c.method == "tfidf"
