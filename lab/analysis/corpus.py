"""Tables and summaries of a built corpus, shared by the command line and notebook 00."""
from __future__ import annotations

import pandas as pd


def corpus_table(manifest: dict) -> pd.DataFrame:
    """Documents, characters and tokens per domain and split."""
    rows = []
    for domain, splits in manifest["splits"].items():
        for split, s in splits.items():
            rows.append({"domain": domain, "split": split, "documents": s["documents"], "chars": s["chars"],
                         "tokens": s["tokens"], "chars_per_token": round(s["chars"] / max(s["tokens"], 1), 2),
                         "sources": ", ".join(s["sources"])})
    return pd.DataFrame(rows)


def build_summary(manifest: dict) -> str:
    t = manifest["timings"]
    lines = [f"corpus {manifest['scale']}: {len(manifest['domains'])} domains + generic, "
             f"vocabulary {manifest['vocab_size']:,}, built in {t['total_s']:.0f} s "
             f"(sources {t['read_sources_s']:.0f} s, tokenizer {t['train_tokenizer_s']:.0f} s, "
             f"tokenizing {t['tokenize_and_write_s']:.0f} s)"]
    for domain, splits in manifest["splits"].items():
        lines.append(f"  {domain:<14}" + "  ".join(f"{s} {v['tokens']:>11,} tok" for s, v in splits.items()))
    for s in manifest["skipped"]:
        lines.append(f"  skipped {s['source']} ({s['package']}): {s['reason']}")
    for domain, leak in manifest["leakage"].items():
        if leak.get("heldout_lines_dropped"):
            lines.append(f"  {domain}: dropped {leak['heldout_lines_dropped']:,} of {leak['heldout_long_lines']:,} "
                         f"held-out lines found in the generic corpus; {leak['remaining_overlap_lines']} remain")
    return "\n".join(lines)


def sample_passages(corpus, n_chars: int = 300, seed: int = 0) -> pd.DataFrame:
    """One passage from the start of a random training document per domain."""
    import random

    rng = random.Random(seed)
    rows = []
    for domain in ["generic"] + corpus.domains:
        docs = corpus.documents(domain, "train")
        doc = rng.choice(docs)
        rows.append({"domain": domain, "source": doc.source, "doc_id": doc.doc_id,
                     "passage": doc.text[:n_chars].replace("\n", " ⏎ ")})
    return pd.DataFrame(rows)


def leakage_table(manifest: dict) -> pd.DataFrame:
    rows = [{"domain": d, "held-out long lines": v["heldout_long_lines"],
             "dropped (in generic)": v["heldout_lines_dropped"],
             "dropped share": round(v["heldout_lines_dropped"] / max(v["heldout_long_lines"], 1), 3),
             "remaining overlap": v.get("remaining_overlap_lines", 0),
             "train lines in generic": v.get("train_overlap_share", 0.0)}
            for d, v in manifest["leakage"].items()]
    return pd.DataFrame(rows)


def corpus_metrics(manifest: dict) -> dict:
    """The small metrics file notebook 00 writes and the tests assert on."""
    splits = manifest["splits"]
    return {
        "scale": manifest["scale"],
        "domains": manifest["domains"],
        "vocab_size": manifest["vocab_size"],
        "tokens": {d: {s: v["tokens"] for s, v in sp.items()} for d, sp in splits.items()},
        "chars_per_token": {d: round(sp["train"]["chars"] / max(sp["train"]["tokens"], 1), 3)
                            for d, sp in splits.items()},
        "remaining_overlap_lines": sum(v.get("remaining_overlap_lines", 0)
                                       for v in manifest["leakage"].values()),
        "skipped_sources": [s["source"] for s in manifest["skipped"]],
        "build_seconds": manifest["timings"]["total_s"],
    }
