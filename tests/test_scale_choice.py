"""The notebooks' empty `scale` finds the scale that has results, and `lab explore` says what is missing."""
import pytest

from lab import atomic, study
from lab.cli import main
from lab.data.corpus import corpus_dir
from lab.errors import LabError


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_DATA", str(tmp_path))
    monkeypatch.delenv("LAB_SCALE", raising=False)
    return tmp_path


def _corpus(scale):
    corpus_dir(scale).mkdir(parents=True)
    (corpus_dir(scale) / "manifest.json").write_text("{}")


def _study(scale, status="done"):
    atomic.write_json(study.manifest_path(scale), {
        "scale": scale, "pretrain": {}, "methods": {}, "plan": {},
        "steps": {"slm/legal": {"method": "slm", "phase": "specialize", "status": status, "cache_key": "k"}}})


def test_an_empty_scale_finds_what_was_built(data, monkeypatch):
    with pytest.raises(LabError, match=r"no scale has a built corpus yet \(tiny: nothing built;.*data build"):
        study.find_scale("", needs="corpus")
    _corpus("tiny")
    assert study.find_scale("", needs="corpus") == "tiny"
    with pytest.raises(LabError, match=r"tiny: corpus built, no study results.*lab study --scale tiny"):
        study.find_scale("")
    _study("tiny", status="failed")
    with pytest.raises(LabError, match="no scale has study results"):
        study.find_scale("")
    _study("tiny")
    assert study.find_scale("") == "tiny"
    # Default over tiny where both have them.
    _corpus("default")
    _study("default")
    assert study.find_scale("", needs="corpus") == "default" and study.find_scale("") == "default"
    monkeypatch.setenv("LAB_SCALE", "tiny")
    assert study.find_scale("") == "tiny"
    assert study.find_scale("paper") == "paper"  # named, as papermill does: taken as it is
    monkeypatch.setenv("LAB_SCALE", "huge")
    with pytest.raises(LabError, match="LAB_SCALE='huge' is not a scale"):
        study.find_scale("")
    with pytest.raises(LabError, match="scale='huge' is not a scale"):
        study.find_scale("huge")


def test_explore_says_what_to_run_first(data, capsys):
    assert main(["explore", "--scale", "default", "--no-browser"]) == 2
    assert "the default study has no results yet: run `python -m lab study --scale default`" in capsys.readouterr().err
    _study("tiny")
    assert main(["explore", "--scale", "default", "--no-browser"]) == 2
    assert "or explore --scale tiny, which has them" in capsys.readouterr().err
    assert main(["explore", "--scale", "tiny", "--port", "70000"]) == 2
    assert "--port 70000: give a port from 1 to 65535" in capsys.readouterr().err
