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
