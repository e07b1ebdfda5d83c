"""How long clustering the generic corpus takes: TF-IDF + SVD for every k, and Sentence-BERT.

    python benchmarks/bench_cluster.py                 # the built corpus of --scale, else synthetic text
    python benchmarks/bench_cluster.py --synthetic     # synthetic text of the default corpus's size

Runs the steps of `lab.data.cluster.fit_clustering` one by one and prints the time
of each. Sentence-BERT is timed on a sample of windows only and extrapolated
(the full pass takes tens of minutes on 2 cores); the figure says so. Nothing
is written to the cluster cache.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import time

import numpy as np

from lab.data import cluster, embed
from lab.data.corpus import corpus_dir, load_corpus
from lab.data.tokens import window_starts


def synthetic_stream(n_windows: int, context: int, seed: int = 0, topics: int = 16, vocab: int = 20_000):
    """Word-level text with topical structure: each document mixes one topic's Zipf law with a global one."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlucmfwypvbgk"))
    words = ["".join(rng.choice(letters, size=rng.integers(2, 8))) for _ in range(vocab)]
    zipf = 1.0 / np.arange(1, vocab + 1)
    zipf /= zipf.sum()
    ranks = [rng.permutation(vocab) for _ in range(topics)]
    n_tokens, doc_len, out = n_windows * context + 1, 2000, []
    while sum(map(len, out)) < n_tokens:
        own = ranks[rng.integers(topics)][rng.choice(vocab, size=doc_len, p=zipf)]
        common = rng.choice(vocab, size=doc_len, p=zipf)
        out.append(np.where(rng.random(doc_len) < 0.5, own, common))
    tokens = np.concatenate(out)[:n_tokens].astype(np.uint16)
    return tokens, lambda ids: " ".join(words[i] for i in ids)


def load_generic(scale: str):
    corpus = load_corpus(scale)
    return corpus.tokens("generic", "train"), cluster.corpus_decode(corpus), corpus.scale.context


def timed(label: str, fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    seconds = time.perf_counter() - t
    print(f"  {label:<34} {seconds:7.1f} s", flush=True)
    return out, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="default")
    parser.add_argument("--synthetic", action="store_true", help="synthetic text even if the corpus is built")
    parser.add_argument("--windows", type=int, default=150_000, help="synthetic windows (default corpus size)")
    parser.add_argument("--sbert-sample", type=int, default=512, help="windows embedded with Sentence-BERT")
    args = parser.parse_args()

    if (corpus_dir(args.scale) / "manifest.json").exists() and not args.synthetic:
        source = f"corpus {corpus_dir(args.scale)}"
        tokens, decode, context = load_generic(args.scale)
    else:
        source = f"synthetic word-level text ({args.windows} windows, stands in for the {args.scale} corpus)"
        context = 128
        tokens, decode = synthetic_stream(args.windows, context)
    ks = cluster.default_ks(args.scale)
    starts = window_starts(len(tokens), context)
    print(f"{source}: {len(tokens):,} tokens, {len(starts):,} windows of {context} tokens, "
          f"{os.cpu_count()} CPU cores, k={list(ks)}")

    print("TF-IDF + truncated SVD (the default):")
    texts, t_decode = timed("decode windows", embed.window_texts, tokens, context, decode, starts)
    print(f"  ({np.mean([len(t) for t in texts[:2000]]):.0f} characters per window)")
    emb = embed.TfidfEmbedder()
    _, t_fit = timed(f"fit TF-IDF + SVD({emb.dim})", emb.fit, texts)
    x, t_embed = timed("embed every window", emb.embed, texts)
    total = t_decode + t_fit + t_embed
    centroids = {}
    for k in cluster.usable_ks(ks, len(starts)):
        centroids[k], t = timed(f"k-means k={k}", cluster.fit_kmeans, x, k)
        _, t_assign = timed(f"  assign windows k={k}", cluster.nearest, x, centroids[k])
        total += t + t_assign
    print(f"  {'total':<34} {total:7.1f} s  (budget: 120 s)")

    if importlib.util.find_spec("sentence_transformers") is None:
        print(f"Sentence-BERT: not installed ({embed.SBERT_INSTALL})")
        return
    print(f"Sentence-BERT ({embed.SBERT_DEFAULT}), timed on a sample of {args.sbert_sample} windows:")
    sbert = embed.make_embedder("sbert")
    timed("load model", sbert.fit, [])
    sample = [texts[i] for i in np.random.default_rng(0).choice(len(texts), args.sbert_sample, replace=False)]
    _, t_sample = timed(f"embed {args.sbert_sample} windows", sbert.embed, sample)
    per_window = t_sample / args.sbert_sample
    print(f"  {per_window * 1000:.1f} ms per window -> about {per_window * len(texts) / 60:.0f} minutes for all "
          f"{len(texts):,} windows (extrapolated, not measured)")


if __name__ == "__main__":
    main()
