"""The findings committed under results/ (what a reader trusts without running the study) are
complete, and `lab results publish` refuses an incomplete or foreign metrics file in one line."""
import json
from pathlib import Path

import pytest

from lab.analysis.findings import PUBLISHED_KEYS, check_published
from lab.cli import main
from lab.errors import LabError

RESULTS = Path(__file__).resolve().parent.parent / "results"


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*/findings.json")), ids=lambda p: p.parent.name)
def test_committed_findings_have_the_schema(path):
    data = json.loads(path.read_text())
    check_published(data, str(path))
    assert data["scale"] == path.parent.name
    assert data["revision"] != "unknown" and data["machine"]["cpu"]


def _complete() -> dict:
    data = {k: t() for k, t in PUBLISHED_KEYS.items()}
    data.update(scale="tiny", revision="0" * 40, machine={"cpu": "x", "cores": 2},
                findings={str(i): {"status": "holds"} for i in range(1, 9)})
    return data


def test_check_published_names_what_is_missing():
    check_published(_complete(), "ok.json")
    broken = _complete()
    del broken["revision"]
    with pytest.raises(LabError, match="broken.json: missing or mistyped revision"):
        check_published(broken, "broken.json")
    broken = _complete()
    broken["findings"]["8"] = {"status": "maybe"}
    with pytest.raises(LabError, match="findings 8 missing"):
        check_published(broken, "broken.json")


def test_publish_refuses_bad_files_in_one_line(tmp_path, capsys):
    missing = tmp_path / "none.json"
    assert main(["results", "publish", "--scale", "tiny", "--source", str(missing), "--to", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "none.json does not exist" in err and err.count("\n") == 1
    other = tmp_path / "default.json"
    other.write_text(json.dumps({**_complete(), "scale": "default"}))
    assert main(["results", "publish", "--scale", "tiny", "--source", str(other), "--to", str(tmp_path / "o")]) == 2
    assert "pass --scale default" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
