import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lab.errors import LabError
from lab.data.userdata import BIG_FILE_CHARS, PIECE_MAX_CHARS, PIECE_MIN_CHARS, read_user_documents, split_text, user_domain_name


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_parquet(path, columns):
    pq.write_table(pa.table(columns), path)
    return path


def paragraphs(n_chars, seed="w"):
    """English-like text with a blank line every ~600 characters."""
    para = " ".join(f"{seed}{i}" for i in range(120))
    out = []
    while sum(len(p) + 2 for p in out) < n_chars:
        out.append(para)
    return "\n\n".join(out)


# ---------------------------------------------------------------- bad input

def test_missing_path_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(LabError, match="does not exist") as e:
        read_user_documents(missing)
    assert str(missing) in str(e.value)


def test_empty_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    write(folder / ".hidden.txt", "hidden files do not count")
    with pytest.raises(LabError, match="empty folder") as e:
        read_user_documents(folder)
    assert str(folder) in str(e.value)


def test_folder_without_readable_files_lists_what_it_found(tmp_path):
    folder = tmp_path / "scans"
    for name in ("a.pdf", "b.pdf", "sub/c.PDF", "d.docx"):
        write(folder / name, "x")
    with pytest.raises(LabError) as e:
        read_user_documents(folder)
    message = str(e.value)
    assert str(folder) in message
    assert "found 3 .pdf, 1 .docx" in message


def test_unsupported_single_file(tmp_path):
    pdf = write(tmp_path / "paper.pdf", "x")
    with pytest.raises(LabError, match=r"\.pdf") as e:
        read_user_documents(pdf)
    assert str(pdf) in str(e.value)


def test_non_utf8_is_replaced_with_a_warning(tmp_path):
    folder = tmp_path / "latin"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"caf\xe9 au lait, na\xefve \xff\xfe end")
    docs, warnings = read_user_documents(folder, allow_bad_bytes=True)  # 4 bad bytes of 26: refused by default
    assert docs[0].text == "caf\ufffd au lait, na\ufffdve \ufffd\ufffd end"
    assert any(str(folder / "a.txt") in w and "4 byte(s)" in w for w in warnings)
    (folder / "a.txt").write_bytes(b"caf\xe9 au lait" + b" plain text" * 20)  # one stray byte in 231
    docs, warnings = read_user_documents(folder)
    assert docs[0].text.startswith("caf\ufffd au lait") and any("1 byte(s)" in w for w in warnings)


def test_invalid_jsonl_line_names_file_and_line(tmp_path):
    f = write(tmp_path / "data.jsonl", '{"text": "fine"}\n\n{"text": broken}\n')
    with pytest.raises(LabError, match="not valid JSON") as e:
        read_user_documents(f)
    assert f"{f}:3" in str(e.value)


def test_jsonl_without_text_field(tmp_path):
    f = write(tmp_path / "data.jsonl", '{"body": "a", "title": "b"}\n')
    with pytest.raises(LabError) as e:
        read_user_documents(f)
    message = str(e.value)
    assert f"{f}:1" in message and "'text'" in message
    assert "'body', 'title'" in message and "text_field=" in message


def test_jsonl_record_that_is_not_an_object(tmp_path):
    f = write(tmp_path / "data.jsonl", '"just a string"\n')
    with pytest.raises(LabError, match="not an object"):
        read_user_documents(f)


def test_parquet_without_text_column(tmp_path):
    f = write_parquet(tmp_path / "t.parquet", {"body": ["a"], "n": [1]})
    with pytest.raises(LabError) as e:
        read_user_documents(f)
    message = str(e.value)
    assert str(f) in message and "'text'" in message
    assert "'body', 'n'" in message and "text_field=" in message


def test_corrupt_parquet(tmp_path):
    f = write(tmp_path / "t.parquet", "not parquet at all")
    with pytest.raises(LabError, match="not a readable parquet") as e:
        read_user_documents(f)
    assert str(f) in str(e.value)


def test_all_files_empty(tmp_path):
    folder = tmp_path / "blank"
    write(folder / "a.txt", "")
    write(folder / "b.md", "  \n\t\n")
    with pytest.raises(LabError, match="empty or hold only whitespace") as e:
        read_user_documents(folder)
    assert str(folder) in str(e.value)


def test_empty_file_is_skipped_with_a_warning(tmp_path):
    folder = tmp_path / "mixed"
    write(folder / "a.txt", "some text")
    write(folder / "b.txt", "   \n")
    docs, warnings = read_user_documents(folder)
    assert [d.doc_id for d in docs] == ["a.txt"]
    assert any(str(folder / "b.txt") in w and "skipped" in w for w in warnings)


# ---------------------------------------------------------------- reading

def test_folder_recursion_order_and_names(tmp_path):
    folder = tmp_path / "contracts"
    for name in ("z.txt", "b/2.md", "a.txt", "b/1.txt", ".git/config.txt", "b/.draft.txt", "notes.pdf"):
        write(folder / name, f"text of {name}")
    docs, warnings = read_user_documents(folder)
    assert [d.doc_id for d in docs] == ["a.txt", "b/1.txt", "b/2.md", "z.txt"]
    assert {d.source for d in docs} == {"user:contracts"}
    assert docs[1].text == "text of b/1.txt"
    assert warnings == []


def test_order_does_not_depend_on_creation_order(tmp_path):
    first, second = tmp_path / "one" / "d", tmp_path / "two" / "d"
    names = [f"f{i}.txt" for i in range(12)]
    for name in names:
        write(first / name, name)
    for name in reversed(names):
        write(second / name, name)
    a, _ = read_user_documents(first)
    b, _ = read_user_documents(second)
    assert a == b
    assert read_user_documents(first) == (a, [])


def test_jsonl_records(tmp_path):
    f = write(tmp_path / "cases.jsonl",
              '{"text": "first"}\n\n{"text": "third line"}\r\n{"text": ""}\n{"text": null}\n')
    docs, warnings = read_user_documents(f)
    assert [(d.source, d.doc_id, d.text) for d in docs] == [
        ("user:cases", "cases.jsonl#1", "first"), ("user:cases", "cases.jsonl#3", "third line")]
    assert any("2 record(s)" in w for w in warnings)


def test_jsonl_other_text_field(tmp_path):
    f = write(tmp_path / "qa.jsonl", json.dumps({"body": "an answer", "text": 3}) + "\n")
    docs, _ = read_user_documents(f, text_field="body")
    assert docs[0].text == "an answer"
    with pytest.raises(LabError, match="is a int, not text"):
        read_user_documents(f)


def test_parquet_rows(tmp_path):
    f = write_parquet(tmp_path / "notes.parquet", {"text": ["alpha", None, "gamma", " "], "k": [1, 2, 3, 4]})
    docs, warnings = read_user_documents(f)
    assert [(d.source, d.doc_id, d.text) for d in docs] == [
        ("user:notes", "notes.parquet#0", "alpha"), ("user:notes", "notes.parquet#2", "gamma")]
    assert any("2 row(s)" in w for w in warnings)


def test_several_files_and_mixed_formats(tmp_path):
    a = write(tmp_path / "a.md", "# title\n\nbody")
    b = write(tmp_path / "b.jsonl", '{"text": "x"}\n')
    docs, warnings = read_user_documents([str(a), b, a])
    assert [d.key for d in docs] == ["user:a/a.md", "user:b/b.jsonl#1"]
    assert any("more than once" in w for w in warnings)


def test_utf8_bom_is_dropped(tmp_path):
    f = tmp_path / "bom.txt"
    f.write_bytes("\ufeffhello".encode("utf-8"))
    docs, warnings = read_user_documents(f)
    assert docs[0].text == "hello" and warnings == []


# ---------------------------------------------------------------- big files

def test_big_single_file_is_cut_at_blank_lines(tmp_path):
    text = paragraphs(200_000)
    f = write(tmp_path / "book.txt", text)
    docs, warnings = read_user_documents(f)
    assert len(docs) >= 200_000 // PIECE_MAX_CHARS
    assert all(PIECE_MIN_CHARS - 2 <= len(d.text) <= PIECE_MAX_CHARS for d in docs)
    assert [d.doc_id for d in docs][:2] == ["book.txt#part0001", "book.txt#part0002"]
    assert len({d.doc_id for d in docs}) == len(docs)
    assert "\n\n".join(d.text for d in docs) == text
    assert any(str(f) in w and f"{len(docs)} documents" in w for w in warnings)


def test_big_files_stay_whole_when_there_are_many_documents(tmp_path):
    folder = tmp_path / "library"
    write(folder / "big.txt", paragraphs(BIG_FILE_CHARS + 10_000))
    for i in range(40):
        write(folder / f"small{i:02d}.txt", f"note {i}")
    docs, warnings = read_user_documents(folder)
    assert len(docs) == 41 and warnings == []


def test_split_text_without_blank_lines_still_cuts():
    one_line = "word " * 10_000
    pieces = split_text(one_line)
    assert len(pieces) == 4 and all(PIECE_MIN_CHARS - 5 <= len(p) <= PIECE_MAX_CHARS for p in pieces)
    unbroken = "x" * 40_000
    assert "".join(split_text(unbroken)) == unbroken


# ---------------------------------------------------------------- names

def test_user_domain_name_is_stable_and_distinct(tmp_path):
    a, b = tmp_path / "one" / "Legal Docs", tmp_path / "two" / "Legal Docs"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    assert user_domain_name(a) == user_domain_name(str(a) + "/")
    assert user_domain_name(a).startswith("legal-docs-")
    assert user_domain_name(a) != user_domain_name(b)
    assert user_domain_name(write(tmp_path / "x.jsonl", "")).startswith("x-")
