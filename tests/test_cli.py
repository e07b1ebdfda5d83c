"""The command line: clear one-line errors with status 2, and machine-readable info."""
import json
import subprocess
import sys

from lab.cli import main


def test_missing_corpus_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LAB_DATA", str(tmp_path))
    assert main(["data", "info", "--scale", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no corpus at") and "python -m lab data build --scale tiny" in err
    assert "Traceback" not in err


def test_data_info_json(tmp_path, monkeypatch, capsys):
    from lab.data.corpus import build

    build("tiny")
    assert main(["data", "info", "--scale", "tiny", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["domains"]) >= 8
    for domain in ["generic"] + info["domains"]:
        assert set(info["splits"][domain]) == {"train", "validation", "test"}
        assert all(s["tokens"] > 0 and s["documents"] > 0 for s in info["splits"][domain].values())
    assert {s["source"] for s in info["sources"]} >= {"licenses", "pystdlib", "shakespeare"}


def test_module_entry_point_reports_bad_scale():
    r = subprocess.run([sys.executable, "-m", "lab", "data", "info", "--scale", "huge"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_repeated_specialize_is_served_from_the_cache(tiny_corpus, capsys):
    # A set size no other test asks for: the first call must compute, whichever tests ran before.
    args = ["specialize", "--method", "slm", "--domain", "legal", "--set-tokens", "12000", "--scale", "tiny",
            "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    for field in ("ppl_before", "ppl_after", "pretrain_flops", "specialize_flops", "inference_flops_per_token"):
        assert first[field] is not None and first[field] >= 0, field
    assert first["ppl_after"] < first["ppl_before"]
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["cached"] and not first["cached"]
    assert {k: v for k, v in second.items() if k != "cached"} == {k: v for k, v in first.items() if k != "cached"}


def test_specialize_on_a_too_small_set_says_how_many_tokens(tiny_corpus, capsys):
    n = len(tiny_corpus.tokens("legal", "train"))
    assert main(["specialize", "--method", "slm", "--domain", "legal", "--set-tokens", "99000000",
                 "--scale", "tiny"]) == 2
    assert f"{n:,} training tokens; 99,000,000 were asked for" in capsys.readouterr().err
