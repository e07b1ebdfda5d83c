import dataclasses
import multiprocessing

import numpy as np
import pytest

from lab.methods.store import ResultRow, ResultStore, cached_run, code_version, data_hash, load_results, stable_hash


def write_rows(path, writer, n, start):
    start.wait(30)  # both open the new database and write at the same moment
    store = ResultStore(path)
    for i in range(n):
        store.add(method="slm", scale="tiny", domain=f"w{writer}", seed=i, ppl_after=float(i))


def test_rows_round_trip_with_extra_fields(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    store.add(method="slm", scale="tiny", domain="legal", set_tokens=np.int64(1_000), ppl_before=90.0,
              ppl_after=40.0, experts=4, extra={"note": "x"})
    df = store.load()
    assert len(df) == 1
    row = df.iloc[0]
    assert row["set_tokens"] == 1_000 and row["ppl_after"] == 40.0
    assert row["extra"] == {"experts": 4, "note": "x"}
    assert row["code_version"] == code_version()


def test_scale_store_lives_in_the_scale_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_DATA", str(tmp_path))
    ResultStore.for_scale("tiny").add(method="llm", scale="tiny")
    assert list(load_results("tiny")["method"]) == ["llm"]


def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "r.sqlite"
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=write_rows, args=(path, w, 150, start)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    df = ResultStore(path).load()
    assert len(df) == 300 and df.groupby("domain").size().to_dict() == {"w0": 150, "w1": 150}


def test_cached_run_reuses_a_stored_result(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    calls = []

    def run():
        calls.append(1)
        return {"ppl_after": 12.5, "seconds": 3.0, "steps": 40}

    key = {"method": "slm", "scale": "tiny", "domain": "legal", "seed": 0, "lr": 1e-3}
    first = cached_run(store, key, run, data_hash="abc")
    second = cached_run(store, dict(reversed(key.items())), run, data_hash="abc")
    assert len(calls) == 1 and second["cached"] and not first["cached"]
    assert dataclasses.replace(second, cached=False) == first
    assert isinstance(first, ResultRow) and first.method == first["method"] == "slm" and dict(first)["scale"] == "tiny"
    assert first["domain"] == "legal" and first["extra"] == {"steps": 40}
    assert first["config_hash"] == stable_hash(key) and first["data_hash"] == "abc"
    cached_run(store, key, run, data_hash="other data")
    cached_run(store, {**key, "lr": 3e-4}, run, data_hash="abc")
    assert len(calls) == 3 and len(store.load()) == 3


def test_hashes_are_stable():
    a = np.arange(1_000, dtype=np.uint16)
    assert data_hash(a) == data_hash(a.copy()) != data_hash(a[::-1].copy())
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    with pytest.raises(TypeError):
        stable_hash({"a": object()})


def test_merge_copies_rows_from_another_store_once(tmp_path, monkeypatch, capsys):
    from lab.cli import main

    here, there = ResultStore(tmp_path / "here.sqlite"), ResultStore(tmp_path / "gpu" / "results.sqlite")
    key = {"method": "slm-is", "scale": "tiny", "domain": "legal", "seed": 0}
    cached_run(here, {**key, "domain": "code"}, lambda: {"ppl_after": 30.0})
    gpu_ckpt = "/scratch/data/tiny/checkpoints/slm-is-legal/step00000100"
    cached_run(there, key, lambda: {"ppl_after": 20.0, "device": "cuda:H100", "checkpoint_path": gpu_ckpt})
    cached_run(there, {**key, "domain": "code"}, lambda: {"ppl_after": 99.0})
    assert here.merge(there.path)[:2] == (1, 1)
    assert here.merge(there.path) == (0, 2, [gpu_ckpt])
    # The merged row is what a study asking for the same key finds: nothing runs again.
    row = cached_run(here, key, lambda: pytest.fail("merged row not reused"))
    assert row["cached"] and row["ppl_after"] == 20.0 and row["device"] == "cuda:H100"
    assert row["extra"] == {"checkpoint_path": gpu_ckpt}
    assert sorted(here.load()["ppl_after"]) == [20.0, 30.0]  # the row already here is kept

    # A row keyed by a checkpoint made elsewhere is found again only with that checkpoint here: say so.
    monkeypatch.setenv("LAB_DATA", str(tmp_path / "data"))
    assert main(["results", "merge", "--scale", "tiny", str(there.path)]) == 0
    out = capsys.readouterr()
    assert "2 rows added, 0 already" in out.out and "slm-is-legal/step00000100" in out.err
    step = tmp_path / "data" / "tiny" / "checkpoints" / "slm-is-legal" / "step00000100"
    step.mkdir(parents=True)
    (step / "meta.json").write_text("{}")
    assert main(["results", "merge", "--scale", "tiny", str(there.path)]) == 0
    assert "warning" not in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("not a database")
    for bad in (tmp_path / "missing.sqlite", tmp_path / "notes.txt"):
        assert main(["results", "merge", "--scale", "tiny", str(bad)]) == 2
        assert str(bad) in capsys.readouterr().err
