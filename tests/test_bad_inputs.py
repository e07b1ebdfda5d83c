"""Bad input and damaged caches: one clear line, exit status 2, and nothing stored.

Each case runs the command line (or the library call behind it) against a private copy of
the tiny corpus, and checks the exit status, the message, and that the data folder is as it
was. The study and specialize cases use a toy method that reads the domain's set (so its
token streams are verified) and trains nothing, as tests/test_study.py does.
"""
import contextlib
import io
import json
import math
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from lab import checks, methods, study
from lab.cli import main
from lab.data import corpus as C
from lab.errors import LabError
from lab.methods.base import Method
from lab.methods.common import domain_data
from lab.methods.store import ResultStore, cached_run, data_hash, load_results

pytestmark = pytest.mark.usefixtures("one_thread")


class Toy(Method):
    """Reads the domain's nested set and makes up a perplexity (`ppl` overrides it per domain)."""
    name, title, from_scratch = "toy17", "Toy 17", True
    delay = 0.0
    ppl: dict = {}

    def specialize(self, domain, set_tokens, scale, *, seed=0, pretrain_flops=None, progress=True, **options):
        dom, train = domain_data(domain, set_tokens, scale)
        time.sleep(self.delay)
        ppl = self.ppl.get(dom.name, 50.0 + set_tokens / 1000)
        key = {"method": self.name, "scale": scale, "domain": dom.name, "set_tokens": set_tokens, "seed": seed}
        return cached_run(ResultStore.for_scale(scale), key, lambda: {
            "ppl_before": 2 * ppl, "ppl_after": ppl, "pretrain_flops": 0.0, "specialize_flops": 1e9,
            "inference_flops_per_token": 1e5, "pretrain_tokens": 0, "specialize_tokens": set_tokens,
            "seconds": 0.01, "device": "cpu"}, data_hash=data_hash(train, dom.test))

    def price(self, step, layout):
        return 1e9


@pytest.fixture
def toy(register_method, monkeypatch):
    register_method(Toy())
    monkeypatch.setattr(Toy, "delay", 0.0)
    monkeypatch.setattr(Toy, "ppl", {})


@pytest.fixture
def data(tiny_corpus, monkeypatch):
    """A data folder of its own holding a copy of the tiny corpus; readable by every user, so
    that a process without root can read it once it is made read-only."""
    root = Path(tempfile.mkdtemp(prefix="lab-bad-inputs-"))
    shutil.copytree(tiny_corpus.root, root / "tiny" / "corpus", ignore=shutil.ignore_patterns("clusters"))
    _chmod(root, dirs=0o755, files=0o644)
    monkeypatch.setenv("LAB_DATA", str(root))
    yield root
    _chmod(root, dirs=0o755, files=0o644)
    shutil.rmtree(root)


def _chmod(root: Path, *, dirs: int, files: int) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(dirs if p.is_dir() else files)


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([*argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line(err: str, *fragments: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for f in fragments:
        assert f in err, (f, err)


SPECIALIZE = ("specialize", "--method", "toy17", "--domain", "legal", "--scale", "tiny")


# -- 1. numbers ---------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (SPECIALIZE + ("--set-tokens", "-500"), "--set-tokens -500: an in-domain set needs at least 66 tokens"),
    (SPECIALIZE + ("--set-tokens", "0"), "--set-tokens 0: an in-domain set needs at least 66 tokens"),
    (SPECIALIZE + ("--set-tokens", "1"), "(one training window: the context of 64 plus two)"),
    (SPECIALIZE + ("--set-tokens", "65"), "--set-tokens 65:"),
    (SPECIALIZE + ("--set-tokens", "2000", "--seed", "-1"), "--seed -1: a seed is a whole number from 0 to"),
    (SPECIALIZE + ("--set-tokens", "2000", "--seed", str(2**32)), "a seed is a whole number"),
    (SPECIALIZE + ("--set-tokens", "2000", "--pretrain-flops", "-1"), "--pretrain-flops -1.0: give a finite number"),
    (SPECIALIZE + ("--set-tokens", "2000", "--pretrain-flops", "inf"), "--pretrain-flops inf:"),
    (("study", "--scale", "tiny", "--methods", "toy17", "--set-sizes", "-5"), "--set-sizes -5: an in-domain set"),
    (("study", "--scale", "tiny", "--methods", "toy17", "--set-sizes", "2000", "--curve-sets", "0"),
     "--curve-sets 0:"),
    (("study", "--scale", "tiny", "--methods", "toy17", "--seed", "-3"), "--seed -3:"),
    (("domain-histogram", "--scale", "tiny", "--domain", "legal", "--k", "0"), "--k 0: give a whole number of at least 2"),
    (("cluster", "--scale", "tiny", "--k", "4", "-1"), "--k -1:"),
    (("notebooks", "--scale", "tiny", "--cell-timeout", "0"), "--cell-timeout 0:"),
    (("pretrain", "--method", "slm-mix", "--scale", "tiny", "--experts", "0"), "slm-mix: --experts 0: must be at least 2"),
    (("specialize", "--method", "slm-is", "--domain", "legal", "--set-tokens", "2000", "--scale", "tiny",
      "--spec-flops", "-1"), "slm-is: --spec-flops -1.0: must be a positive number"),
    (("specialize", "--method", "slm-is", "--domain", "legal", "--set-tokens", "2000", "--scale", "tiny",
      "--k", "0"), "slm-is: --k 0: must be at least 1"),
])
def test_bad_numbers_are_one_line_and_store_nothing(data, toy, capsys, argv, message):
    before = snapshot(data)
    rc, _, err = cli(capsys, *argv)
    assert rc == 2
    assert_one_line(err, message)
    assert snapshot(data) == before


def test_the_library_refuses_the_same_numbers(data, toy):
    before = snapshot(data)
    with pytest.raises(LabError, match="--set-tokens -500"):
        methods.specialize("toy17", "legal", -500, "tiny")
    with pytest.raises(LabError, match="--seed -1"):
        methods.specialize("toy17", "legal", 2_000, "tiny", seed=-1)
    with pytest.raises(LabError, match="--seed -1"):
        methods.pretrain("slm", "tiny", seed=-1)
    with pytest.raises(LabError, match="--set-sizes -5"):
        study.run_study("tiny", ["toy17"], ["legal"], [-5], progress=False, log=lambda _: None)
    with pytest.raises(LabError, match="--is-sets 1"):
        study.make_plan("tiny", ["toy17"], set_sizes=[2_000], is_sets=[1])
    domain = C.load_domain("legal", "tiny")
    for n in (-500, 0, 1, 65, 2.5, True):
        with pytest.raises(LabError, match="at least 66 tokens"):
            domain.set(n)
    assert len(domain.set(66)) == 66 and len(domain.set(np.int64(2_000))) == 2_000
    with pytest.raises(LabError, match="finite number above zero"):
        checks.positive(math.nan, "--spec-flops")
    assert snapshot(data) == before


# -- 2. two studies at once, and kill -9 --------------------------------------------

def _study(domains, sets, start=None):
    if start is not None:
        start.wait(30)
    study.run_study("tiny", ["toy17"], domains, sets, curve_sets=[], progress=False, log=lambda _: None)


def test_two_studies_at_once_keep_each_others_steps(data, toy, monkeypatch):
    monkeypatch.setattr(Toy, "delay", 0.05)  # the steps of the two interleave
    sets = [1_000, 2_000, 4_000, 8_000]
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_study, args=([d], sets, start)) for d in ("code", "legal")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    steps = [s for s in study.read_manifest("tiny")["steps"].values() if s["method"] == "toy17"]
    assert sorted((s["domain"], s["set_tokens"]) for s in steps if s["status"] == "done") == \
        sorted((d, n) for d in ("code", "legal") for n in sets)
    results = study.load_study("tiny").results
    assert len(results) == 8 and set(results["domain"]) == {"code", "legal"}


def test_a_study_killed_with_sigkill_resumes_exactly(data, toy, monkeypatch):
    monkeypatch.setattr(Toy, "delay", 0.3)
    domains, sets = ["code", "legal"], [1_000, 2_000]
    proc = multiprocessing.get_context("fork").Process(target=_study, args=(domains, sets))
    proc.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(LabError):  # read between a write's two halves: never, it is atomic
            if sum(s["status"] == "done" for s in study.read_manifest("tiny")["steps"].values()) >= 2:
                break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    done = {sid for sid, s in study.read_manifest("tiny")["steps"].items() if s["status"] == "done"}
    stored = load_results("tiny")
    assert 2 <= len(done) <= len(stored) < 4  # a row may be stored just before its manifest entry

    monkeypatch.setattr(Toy, "delay", 0.0)
    report = study.run_study("tiny", ["toy17"], domains, sets, curve_sets=[], progress=False, log=lambda _: None)
    assert report.ok and report.cached == len(stored) and report.done == 4 - len(stored)
    again = study.load_study("tiny").results
    assert len(again) == 4 and sorted(again["ppl_after"]) == [51.0, 51.0, 52.0, 52.0]


# -- 3. damaged caches, and non-finite perplexities ---------------------------------

def test_a_damaged_token_stream_is_named_with_the_command_that_rebuilds_it(data, toy, capsys):
    stream = data / "tiny" / "corpus" / "tokens" / "legal" / "test.bin"
    good = stream.read_bytes()
    stream.write_bytes(good[: len(good) // 2] + bytes(len(good) - len(good) // 2))  # half zeroed
    before = snapshot(data)
    rc, _, err = cli(capsys, *SPECIALIZE, "--set-tokens", "2000")
    assert rc == 2
    assert_one_line(err, f"{stream} is damaged: its contents differ from what was written",
                    "python -m lab data build --scale tiny --force")
    stream.write_bytes(good[:-2])
    rc, _, err = cli(capsys, *SPECIALIZE, "--set-tokens", "2000")
    assert rc == 2
    assert_one_line(err, f"{stream} is damaged: it has {len(good) - 2:,} bytes where {len(good):,} were written")
    assert {k: v for k, v in snapshot(data).items() if "test.bin" not in k} == \
        {k: v for k, v in before.items() if "test.bin" not in k}
    stream.write_bytes(good)
    assert cli(capsys, *SPECIALIZE, "--set-tokens", "2000")[0] == 0


def test_a_damaged_checkpoint_is_refused_and_nothing_is_stored(data):
    from lab.methods.runs import pretrain_run, specialize_run
    from lab.nn.checkpoints import load_model
    from lab.training.train import train_config

    corpus = C.load_corpus("tiny")
    generic = corpus.tokens("generic", "train")
    first = train_config("slm", "tiny").checkpoint_flops[:1]
    [ckpt] = pretrain_run("slm", "tiny", generic[:200_000], budget_flops=first, progress=False)
    legal = corpus.domain("legal")
    args = (ckpt, "slm", "tiny", "legal", legal.set(2_000), legal.validation, legal.test)
    weights = ckpt / "model.safetensors"
    good = weights.read_bytes()
    damaged = bytearray(good)
    damaged[len(good) // 2: len(good) // 2 + 4096] = np.random.default_rng(0).bytes(4096)  # 4 KB of junk
    weights.write_bytes(bytes(damaged))
    rows = len(load_results("tiny"))
    with pytest.raises(LabError) as e:
        specialize_run(*args, progress=False)
    assert str(e.value).startswith(f"{weights} is damaged: its contents differ from what was written")
    assert f"delete the folder {ckpt}" in str(e.value)
    weights.write_bytes(good[:1000])
    with pytest.raises(LabError, match=f"it has 1,000 bytes where {len(good):,} were written"):
        load_model(ckpt)
    assert len(load_results("tiny")) == rows
    weights.write_bytes(good)
    assert np.isfinite(specialize_run(*args, progress=False)["ppl_after"])


def test_damaged_trainer_state_and_meta_are_named(tmp_path):
    from lab.nn.checkpoints import read_meta
    from lab.nn.model import GPTConfig
    from lab.training.train import TrainConfig, pretrain

    cfg = GPTConfig(vocab_size=256, context=16, n_layer=1, n_head=2, d_model=16)
    tc = TrainConfig(batch_size=4, warmup_steps=2, save_every=5)
    tokens = np.random.default_rng(0).integers(0, 256, 5_000).astype(np.uint16)
    pretrain(cfg, tc, tokens, tmp_path, budget_tokens=[4 * 16 * 10], progress=False)
    main_state = tmp_path / "main" / "state.pt"
    good = main_state.read_bytes()
    main_state.write_bytes(good[: len(good) // 2])
    with pytest.raises(LabError, match=f"{main_state} is damaged: it has {len(good) // 2:,} bytes where") as e:
        pretrain(cfg, tc, tokens, tmp_path, budget_tokens=[4 * 16 * 20], progress=False)
    assert f"delete the folder {tmp_path / 'main'}" in str(e.value)

    meta_path = tmp_path / "main" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["files"]  # a folder written before files were recorded: the load itself fails
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(LabError, match=f"{main_state} is not readable"):
        pretrain(cfg, tc, tokens, tmp_path, budget_tokens=[4 * 16 * 20], progress=False)

    meta_path.write_text(meta_path.read_text()[:50])
    with pytest.raises(LabError, match=f"{meta_path} is damaged .*; delete the folder"):
        read_meta(tmp_path / "main")


@pytest.mark.parametrize("ppl", [math.nan, math.inf])
def test_a_non_finite_perplexity_is_not_stored(data, toy, capsys, monkeypatch, ppl):
    monkeypatch.setattr(Toy, "ppl", {"legal": ppl})
    ResultStore.for_scale("tiny")
    before = snapshot(data)
    rc, _, err = cli(capsys, *SPECIALIZE, "--set-tokens", "2000")
    assert rc == 2
    assert_one_line(err, f"toy17 on legal: ppl_before is {ppl}, not a finite perplexity", "nothing was stored")
    assert snapshot(data) == before and len(load_results("tiny")) == 0


# -- 4. storage errors, manifests, a read-only folder --------------------------------

def test_a_damaged_results_store_is_one_line(data, toy, capsys):
    path = data / "tiny" / "results.sqlite"
    path.write_bytes(np.random.default_rng(1).bytes(8192))
    before = snapshot(data)
    rc, _, err = cli(capsys, *SPECIALIZE, "--set-tokens", "2000")
    assert rc == 2
    assert_one_line(err, f"{path} is damaged or not a results store (file is not a database)", "move it aside")
    assert snapshot(data) == before

    path.unlink()
    store = ResultStore(path)
    for i in range(300):
        store.add(cache_key=str(i), method="toy17", domain="legal", ppl_after=1.0, note="x" * 500)
    blob = bytearray(path.read_bytes())
    path.write_bytes(bytes(blob[: len(blob) // 3]))
    rc, _, err = cli(capsys, "results", "merge", "--scale", "tiny", str(path))
    assert rc == 2
    assert_one_line(err, "(database disk image is malformed)")


def test_damaged_manifests_are_one_line(data, toy, capsys):
    manifest = data / "tiny" / "corpus" / "manifest.json"
    good = manifest.read_text()
    manifest.write_text(good[:100])
    before = snapshot(data)
    rc, _, err = cli(capsys, "data", "build", "--scale", "tiny")
    assert rc == 2
    assert_one_line(err, f"{manifest} is damaged", "python -m lab data build --scale tiny --force")
    assert snapshot(data) == before
    manifest.write_text(good)

    study_manifest = study.manifest_path("tiny")
    study_manifest.parent.mkdir(parents=True)
    study_manifest.write_text('{"steps": {')
    before = snapshot(data)
    rc, _, err = cli(capsys, "study", "--scale", "tiny", "--methods", "toy17", "--domains", "legal",
                     "--set-sizes", "2000", "--curve-sets")
    assert rc == 2
    assert_one_line(err, f"{study_manifest} is damaged", "delete it and run `python -m lab study --scale tiny`")
    assert snapshot(data) == before


def _as_reader(fn):
    """fn() in a child process that cannot write the data folder: the folder is made read-only,
    and a root process (which writes anyway) also drops to the user nobody."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def child():
        if os.getuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        queue.put(fn())

    proc = ctx.Process(target=child)
    proc.start()
    result = queue.get(timeout=120)
    proc.join(10)
    return result


def _quiet_main(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([*argv])
    return rc, out.getvalue(), err.getvalue()


def test_cached_reads_work_from_a_read_only_folder(data, toy, capsys):
    first = cli(capsys, *SPECIALIZE, "--set-tokens", "2000", "--json")
    assert first[0] == 0 and not json.loads(first[1])["cached"]
    _chmod(data, dirs=0o555, files=0o444)
    before = snapshot(data)
    rc, out, err = _as_reader(lambda: _quiet_main(*SPECIALIZE, "--set-tokens", "2000", "--json"))
    assert rc == 0, err
    assert json.loads(out) == {**json.loads(first[1]), "cached": True}
    rc, out, err = _as_reader(lambda: _quiet_main(*SPECIALIZE, "--set-tokens", "4000"))
    assert rc == 2
    assert_one_line(err, f"{data / 'tiny' / 'results.sqlite'} is read-only here", "LAB_DATA")
    assert snapshot(data) == before


# -- 5. user files ----------------------------------------------------------------------

def test_random_bytes_are_refused_unless_allowed(data, toy, capsys, tmp_path):
    folder = tmp_path / "random"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(6):
        (folder / f"f{i}.txt").write_bytes(rng.bytes(8_000))
    before = snapshot(data)
    argv = ("specialize", "--method", "toy17", "--domain", str(folder), "--set-tokens", "100", "--scale", "tiny")
    rc, _, err = cli(capsys, *argv)
    assert rc == 2
    assert_one_line(err, f"{folder / 'f0.txt'}: ", "% of its bytes", "are not valid UTF-8", "--allow-bad-bytes")
    share = float(err.split(": ", 2)[2].split("%")[0])
    assert 20 < share < 80
    assert snapshot(data) == before
    assert cli(capsys, *argv, "--allow-bad-bytes")[0] == 0
    assert cli(capsys, *argv, "--json")[0] == 0  # read as its cache was built


def test_the_command_line_takes_the_text_field(data, toy, capsys, tmp_path):
    path = tmp_path / "qa.jsonl"
    words = "the court held that the licence grants a right to copy and modify the work".split()
    with open(path, "w") as f:
        for i in range(12):
            body = " ".join(words[(i + j) % len(words)] for j in range(300))
            f.write(json.dumps({"id": i, "body": body}) + "\n")
    argv = ("specialize", "--method", "toy17", "--domain", str(path), "--set-tokens", "100", "--scale", "tiny")
    before = snapshot(data)
    rc, _, err = cli(capsys, *argv)
    assert rc == 2
    assert_one_line(err, f"{path}:1 has no field 'text' (fields found: 'id', 'body')",
                    "pass --text-field (text_field= in Python)")
    assert snapshot(data) == before
    assert cli(capsys, *argv, "--text-field", "body")[0] == 0
