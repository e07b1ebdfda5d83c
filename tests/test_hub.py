import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lab.errors import LabError
from lab.data.hub import PAPER_DOMAINS, PAPER_GENERIC, UNCOPYRIGHTED_DOMAINS, HubSpec, is_remote, stream_documents


@pytest.fixture
def pile_jsonl(tmp_path):
    """A stand-in for a mixed Pile shard: nested meta.pile_set_name, no id field."""
    path = tmp_path / "pile.jsonl"
    with path.open("w") as f:
        for i in range(30):
            name = "FreeLaw" if i % 3 == 0 else "ArXiv"
            f.write(json.dumps({"text": f"record {i:02d} " + "x" * 40, "meta": {"pile_set_name": name}}) + "\n")
    return path


def test_nested_filter_selects_one_subset(pile_jsonl):
    spec = HubSpec(path="json", data_files=str(pile_jsonl), filter_field="meta.pile_set_name",
                   filter_value="FreeLaw")
    docs = list(stream_documents(spec, 10_000, source="pile:freelaw"))
    assert [d.doc_id for d in docs] == [str(i) for i in range(0, 30, 3)]
    assert all(d.source == "pile:freelaw" and d.text.startswith("record") for d in docs)


def test_max_chars_is_an_exact_cap(pile_jsonl):
    spec = HubSpec(path="json", data_files=[str(pile_jsonl)])
    docs = list(stream_documents(spec, 120, source="s"))
    assert sum(len(d.text) for d in docs) == 120
    assert len(docs) == 3
    everything = list(stream_documents(spec, 10**9, source="s"))
    assert len(everything) == 30
    assert list(stream_documents(spec, 0, source="s")) == []


def test_parquet_stand_in_uses_id_and_url_fields(tmp_path):
    path = tmp_path / "c4.parquet"
    pq.write_table(pa.table({
        "text": ["first page", "", "second page", "third page"],
        "url": ["https://a.example/1", "https://a.example/2", "https://a.example/1", "https://b.example/3"],
    }), path)
    spec = HubSpec(path="parquet", data_files={"train": [str(path)]})
    docs = list(stream_documents(spec, 1_000, source="c4"))
    assert [(d.doc_id, d.text) for d in docs] == [
        ("https://a.example/1", "first page"), ("https://a.example/1#2", "second page"),
        ("https://b.example/3", "third page")]


def test_other_text_field_and_split(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"id": 7, "body": "answer"}) + "\n")
    spec = HubSpec(path="json", data_files={"test": str(path)}, split="test", text_field="body")
    assert [(d.doc_id, d.text) for d in stream_documents(spec, 100, source="q")] == [("7", "answer")]


def test_missing_text_field_lists_fields(pile_jsonl):
    spec = HubSpec(path="json", data_files=str(pile_jsonl), text_field="content")
    with pytest.raises(LabError, match=r"no field 'content' \(fields found: 'text', 'meta'\)"):
        list(stream_documents(spec, 100, source="s"))


def test_missing_filter_field_names_it(pile_jsonl):
    spec = HubSpec(path="json", data_files=str(pile_jsonl), filter_field="meta.subset", filter_value="FreeLaw")
    with pytest.raises(LabError, match=r"'meta.subset'.*found: 'pile_set_name'"):
        list(stream_documents(spec, 100, source="s"))


def test_filter_matching_nothing(pile_jsonl):
    spec = HubSpec(path="json", data_files=str(pile_jsonl), filter_field="meta.pile_set_name",
                   filter_value="Books3")
    with pytest.raises(LabError, match="no record"):
        list(stream_documents(spec, 100, source="s"))


def test_missing_local_files(tmp_path):
    spec = HubSpec(path="json", data_files=str(tmp_path / "none-*.jsonl"))
    with pytest.raises(LabError, match="no file matches"):
        list(stream_documents(spec, 100, source="s"))


def test_unparsable_local_file(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{broken\n')
    with pytest.raises(LabError, match="could not be parsed"):
        list(stream_documents(HubSpec(path="json", data_files=str(path)), 100, source="s"))


def test_paper_specs():
    assert PAPER_GENERIC.path == "allenai/c4" and PAPER_GENERIC.name == "en"
    assert sorted(PAPER_DOMAINS) == ["arxiv", "europarl", "freelaw", "gutenberg", "opensubtitles",
                                     "openwebtext2", "pubmed_abstracts", "stackexchange", "wikipedia"]
    assert set(UNCOPYRIGHTED_DOMAINS) == set(PAPER_DOMAINS) - {"opensubtitles", "openwebtext2"}
    assert all(is_remote(s) for s in [PAPER_GENERIC, *PAPER_DOMAINS.values(), *UNCOPYRIGHTED_DOMAINS.values()])
    assert not is_remote(HubSpec(path="json", data_files="x.jsonl"))


@pytest.mark.parametrize("spec", [PAPER_GENERIC, PAPER_DOMAINS["freelaw"]], ids=["c4", "pile"])
def test_remote_offline_is_a_clear_lab_error(spec):
    with pytest.raises(LabError) as e:
        list(stream_documents(spec, 1_000, source="c4"))
    message = str(e.value)
    assert "reads c4 and the Pile from the Hugging Face hub" in message
    assert spec.path in message
    assert "offline" in message and "HF_HUB_OFFLINE=1" in message
    assert "--scale default" in message and "HF_HOME" in message and "local folder" in message
    assert isinstance(e.value.__cause__, ConnectionError)
