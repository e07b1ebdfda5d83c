"""The corpus builder on synthetic sources: splits, nesting, leakage, atomicity, errors."""
import json
import random

import numpy as np
import pytest

import lab.data.sources
from lab.data import corpus as C
from lab.data.documents import Document
from lab.errors import LabError

TOPICS = {
    "licenses": "licence grant warranty liability permission copyright holder notice software redistribution",
    "pystdlib": "def return import class self value none raise except lambda yield args kwargs",
    "kjv": "lord god israel unto thee thou hath people king house children land",
    "fortunes": "fortune cookie wisdom luck happiness friend tomorrow smile laugh joke",
    "wordnet": "noun verb adjective sense meaning gloss synonym word usage example",
}
BOILERPLATE = "THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AS IS AND ANY WARRANTIES"


class FakeSource:
    def __init__(self, name, n_docs=60, words=400, seed=0):
        self.name, self.kind, self.package = name, "pypi", f"fake-{name}"
        self.n_docs, self.words, self.seed = n_docs, words, seed

    def documents(self, limit_chars=None):
        rng = random.Random(f"{self.name}{self.seed}")
        vocab = TOPICS[self.name].split()
        used = 0
        for i in range(self.n_docs):
            lines = [" ".join(rng.choice(vocab) for _ in range(12)) for _ in range(self.words // 12)]
            if self.name == "licenses":
                lines.insert(rng.randrange(len(lines)), BOILERPLATE)
            text = "\n".join(lines)
            yield Document(self.name, f"doc{i:03d}", text)
            used += len(text)
            if limit_chars and used >= limit_chars:
                return

    def info(self):
        return {"package": self.package, "version": "1.0", "kind": self.kind, "archive_sha256": "0" * 64}


class Unavailable(FakeSource):
    def documents(self, limit_chars=None):
        raise lab.data.sources.SourceUnavailable("apt-get is not available on this system")


class _SourceUnavailable(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


@pytest.fixture
def fake_sources(monkeypatch, tmp_path):
    # Its own data folder: the session's holds the real tiny corpus other tests share.
    monkeypatch.setenv("LAB_DATA", str(tmp_path / "data"))
    if not hasattr(lab.data.sources, "SourceUnavailable"):
        monkeypatch.setattr(lab.data.sources, "SourceUnavailable", _SourceUnavailable, raising=False)
    sources = {n: FakeSource(n) for n in TOPICS}
    sources["pari"] = Unavailable("pari")
    monkeypatch.setattr(lab.data.sources, "SOURCES", sources, raising=False)
    return sources


@pytest.fixture
def built(fake_sources, monkeypatch):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    return C.build("tiny", force=True)


def _small_scale():
    from lab.scales import SCALES
    import dataclasses
    return dataclasses.replace(SCALES["tiny"], vocab_size=300, set_tokens=(100, 800, 6400),
                               valid_tokens=800, test_tokens=800)


def _keys(corpus, domain, split):
    return {d.key for d in corpus.documents(domain, split)}


def test_splits_are_disjoint_by_document(built, monkeypatch):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    corpus = C.load_corpus("tiny")
    assert set(corpus.domains) == {"legal", "code", "scripture"}
    seen = {}
    for domain in [C.GENERIC] + corpus.domains:
        for split in C.SPLITS:
            keys = _keys(corpus, domain, split)
            assert keys, (domain, split)
            for k in keys:
                assert k not in seen, f"{k} in {seen.get(k)} and {(domain, split)}"
                seen[k] = (domain, split)


def test_generic_holds_every_source(built, monkeypatch):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    corpus = C.load_corpus("tiny")
    sources = {d.source for d in corpus.documents(C.GENERIC, "train")}
    assert sources == set(TOPICS)


def test_build_is_deterministic(fake_sources, monkeypatch, tmp_path):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    first = C.build("tiny", force=True)
    monkeypatch.setenv("LAB_DATA", str(tmp_path / "other"))
    second = C.build("tiny", force=True)
    assert first["splits"] == second["splits"]
    assert first["tokenizer_sha256"] == second["tokenizer_sha256"]


def test_nested_sets_are_prefixes(built, monkeypatch):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    corpus = C.load_corpus("tiny")
    small, mid, large = (corpus.train_set("legal", n) for n in _small_scale().set_tokens)
    assert len(small) == 100 and len(large) == 6400
    np.testing.assert_array_equal(mid[:100], small)
    np.testing.assert_array_equal(large[:800], mid)


def test_small_sets_sample_the_whole_training_stream(built, monkeypatch):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    domain = C.load_corpus("tiny").domain("legal")
    chunk = domain.chunk_tokens
    small = domain.set(8 * chunk)
    # Every chunk of the set is a chunk of the stream, and they come from all over it, not its start.
    starts = [next(s for s in range(0, len(domain.train), chunk)
                   if np.array_equal(domain.train[s:s + chunk], small[i:i + chunk]))
              for i in range(0, len(small), chunk)]
    assert len(set(starts)) == 8 and max(starts) > len(domain.train) // 2
    np.testing.assert_array_equal(np.sort(domain.set(len(domain.train))), np.sort(domain.train))


def test_too_small_domain_says_how_many_tokens(built, monkeypatch):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    corpus = C.load_corpus("tiny")
    n = len(corpus.tokens("legal", "train"))
    with pytest.raises(LabError, match=f"{n:,} training tokens; 10,000,000 were asked"):
        corpus.train_set("legal", 10_000_000)


def test_heldout_lines_never_occur_in_generic(built, monkeypatch):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    corpus = C.load_corpus("tiny")
    generic = {line.strip() for s in C.SPLITS for d in corpus.documents(C.GENERIC, s)
               for line in d.text.splitlines() if len(line.strip()) > 30}
    for domain in corpus.domains:
        for split in ("validation", "test"):
            for d in corpus.documents(domain, split):
                for line in d.text.splitlines():
                    assert not (len(line.strip()) > 30 and line.strip() in generic)
    leak = corpus.manifest["leakage"]["legal"]
    assert leak["heldout_lines_dropped"] > 0
    assert leak["remaining_overlap_lines"] == 0


def test_manifest_records_skipped_sources(built):
    assert built["skipped"] == [{"source": "pari", "package": "fake-pari",
                                 "reason": "apt-get is not available on this system"}]
    assert {s["source"] for s in built["sources"]} == set(TOPICS)


def test_tokenizer_round_trips(built, monkeypatch):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    tok = C.load_corpus("tiny").tokenizer
    for text in ["def f(x):\n    return x  # ünïcode ✓", "lord god israel\n\n", "\x00odd bytes \ufffd"]:
        assert tok.decode(tok.encode(text)) == text


def test_interrupted_build_keeps_previous_corpus(built, monkeypatch):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    before = (C.corpus_dir("tiny") / "manifest.json").read_text()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(C, "write_domain", boom)
    with pytest.raises(KeyboardInterrupt):
        C.build("tiny", force=True)
    assert (C.corpus_dir("tiny") / "manifest.json").read_text() == before
    assert not list(C.corpus_dir("tiny").parent.glob(".corpus.*"))
    C.load_corpus("tiny").tokens("legal", "train")


def test_build_is_cached(built, monkeypatch):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    monkeypatch.setattr(C, "_collect", lambda *a: pytest.fail("rebuilt a cached corpus"))
    assert C.build("tiny") == built


def test_replaced_tokenizer_is_detected(built, monkeypatch):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    path = C.corpus_dir("tiny") / "tokenizer.json"
    tok = json.loads(path.read_text())
    tok["model"]["vocab"]["zzzz"] = 99999
    path.write_text(json.dumps(tok))
    with pytest.raises(LabError, match="not the tokenizer .* --force"):
        C.load_corpus("tiny").tokenizer


def test_missing_corpus_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_DATA", str(tmp_path))
    with pytest.raises(LabError, match="python -m lab data build --scale tiny"):
        C.load_corpus("tiny")


def _write_user_folder(folder, n_files=30, seed=1):
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    words = "patient dose tablet clinic symptom therapy chronic acute nurse ward".split()
    for i in range(n_files):
        lines = [" ".join(rng.choice(words) for _ in range(10)) for _ in range(40)]
        lines.append(BOILERPLATE)
        (folder / f"note{i:02d}.txt").write_text("\n".join(lines))
    return folder


def test_user_folder_gets_splits_sets_and_leakage_filter(built, monkeypatch, tmp_path):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    folder = _write_user_folder(tmp_path / "clinic")
    dom = C.load_domain(str(folder), "tiny")
    assert dom.origin.startswith("user:")
    assert len(dom.train) > 0 and len(dom.validation) > 0 and len(dom.test) > 0
    np.testing.assert_array_equal(dom.set(800)[:100], dom.set(100))
    tok = C.load_corpus("tiny").tokenizer
    assert BOILERPLATE not in tok.decode(dom.validation) and BOILERPLATE not in tok.decode(dom.test)
    assert BOILERPLATE in tok.decode(dom.train)
    with pytest.raises(LabError, match="training tokens; 10,000,000 were asked"):
        dom.set(10_000_000)


def test_user_domain_is_cached_and_checks_its_tokenizer(built, monkeypatch, tmp_path):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    folder = _write_user_folder(tmp_path / "clinic")
    first = C.load_domain(str(folder), "tiny")
    monkeypatch.setattr(C, "split_documents", lambda *a, **k: pytest.fail("re-split a cached domain"))
    np.testing.assert_array_equal(C.load_domain(str(folder), "tiny").train, first.train)

    from lab.data.userdata import user_domain_name

    meta_path = C.scale_dir("tiny") / "domains" / user_domain_name(folder) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["tokenizer_sha256"] = "f" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(LabError, match="another tokenizer.*--rebuild"):
        C.load_domain(str(folder), "tiny")
    assert json.loads(meta_path.read_text()) == meta


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "empty"),
    (lambda p: (p / "a.pdf").write_bytes(b"%PDF") and p, ".pdf"),
    (lambda p: p / "missing", "neither a domain"),
])
def test_bad_user_input_is_explained(built, monkeypatch, tmp_path, make, message):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    folder = tmp_path / "bad"
    folder.mkdir()
    target = make(folder) or folder
    with pytest.raises(LabError, match=message) as err:
        C.load_domain(str(target), "tiny")
    assert str(target.name) in str(err.value) or "missing" in str(err.value)


def test_too_few_user_documents(built, monkeypatch, tmp_path):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    folder = _write_user_folder(tmp_path / "two", n_files=2)
    with pytest.raises(LabError, match="2 document"):
        C.load_domain(str(folder), "tiny")


def test_non_utf8_user_file_is_reported(built, monkeypatch, tmp_path):
    monkeypatch.setattr(C, "get_scale", lambda name: _small_scale())
    folder = _write_user_folder(tmp_path / "latin")
    (folder / "note00.txt").write_bytes("caf\xe9 ".encode("latin-1") * 200)
    with pytest.raises(LabError, match="20.0% of its bytes"):
        C.load_domain(str(folder), "tiny")
    dom = C.load_domain(str(folder), "tiny", allow_bad_bytes=True)
    assert any("note00.txt" in w for w in dom.warnings)


def test_heldout_splits_mirror_the_source_mix():
    big = [Document("licenses", f"l{i}", "licence text line\n" * 50) for i in range(180)]
    small = [Document("gcide", f"g{i}", "dictionary entry\n" * 50) for i in range(20)]
    splits, _ = C.split_documents(big + small, valid_chars=20_000, test_chars=20_000, seed=0)
    for split in C.SPLITS:
        chars = {src: sum(len(d.text) for d in splits[split] if d.source == src) for src in ("licenses", "gcide")}
        share = chars["gcide"] / sum(chars.values())
        assert 0.05 <= share <= 0.2, (split, share)
