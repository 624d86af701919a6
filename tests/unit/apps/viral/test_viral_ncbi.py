"""NCBI download: query, rate limit, backoff, manifest and resume, replayed from recorded answers.

The cassettes in tests/data/ncbi/ stand for NCBI (see make_fixtures.py there): no network, and the
injected clock makes every sleep instant while recording how long the code wanted to wait.
"""

import hashlib
import logging
from pathlib import Path

import pytest

from quantscan.apps.viral import ncbi
from quantscan.apps.viral.fasta import read_fasta
from quantscan.errors import ConfigError, InputFormatError

DATA = Path(__file__).resolve().parents[3] / "data" / "ncbi"
TERM = "txid687329[Organism:exp] AND 1000:3500[SLEN]"
ACCESSIONS = [f"ZZ{100100 + i:06d}.1" for i in range(1, 8)]
SECRET = "d3adb33fSECRETkey0123456789abcdef0"


class FakeClock:
    """Monotonic clock that only moves when someone sleeps; remembers every sleep."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []
        self.request_times = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


class TimedReplay(ncbi.ReplayEntrez):
    """Replay that also notes the fake time at which each request was made."""

    def __init__(self, cassette, fake_clock):
        other = ncbi.ReplayEntrez.from_file(DATA / cassette)
        super().__init__(other._queue, other.base_dir)
        self.fake_clock = fake_clock

    def _answer(self, util, params):
        self.fake_clock.request_times.append(self.fake_clock.now)
        return super()._answer(util, params)


def make_client(cassette, fake, **kw):
    replay = TimedReplay(cassette, fake)
    client = ncbi.EntrezClient(
        "quantscan-tests",
        "tests@example.org",
        entrez=replay,
        clock=fake.clock,
        sleep=fake.sleep,
        **kw,
    )
    return client, replay


QUERY = ncbi.Query(taxon_id=687329, min_length=1000, max_length=3500, max_records=7)


@pytest.fixture(autouse=True)
def no_key(monkeypatch):
    monkeypatch.delenv(ncbi.API_KEY_ENV, raising=False)


# ----------------------------------------------------------------------------- query


def test_term_from_config():
    q = ncbi.Query.from_config(
        {
            "taxon_id": "1458186",
            "min_length": 1000,
            "max_length": 3500,
            "extra_term": "refseq[filter]",
        }
    )
    assert q.term == "txid1458186[Organism:exp] AND 1000:3500[SLEN] AND (refseq[filter])"
    assert ncbi.build_term(687329) == "txid687329[Organism:exp]"
    with pytest.raises(ConfigError, match="unknown keys.*taxid"):
        ncbi.Query.from_config({"taxid": 1})
    with pytest.raises(ConfigError, match="one line"):
        ncbi.Query(taxon_id=1, extra_term="refseq[filter]\nAND x")
    with pytest.raises(ConfigError, match="length range"):
        ncbi.Query(taxon_id=1, min_length=3000, max_length=1000)
    with pytest.raises(ConfigError, match="e-mail"):
        ncbi.EntrezClient("tool", "", entrez=ncbi.ReplayEntrez([]))


# ----------------------------------------------------------------------------- fresh download


def test_fresh_download_with_429_and_500(tmp_path, caplog):
    fake = FakeClock()
    client, replay = make_client("cassette_fresh.json", fake, backoff_base=1.0)
    with caplog.at_level(logging.INFO, logger="quantscan.apps.viral.ncbi"):
        result = ncbi.download_class(QUERY, tmp_path, client, batch_size=3)
    assert replay.remaining == 0
    assert result.n_records == 7 and result.fetched == [0, 1, 2] and result.reused == []

    # every call carries tool and email; history-server fetches, not ids, on the first run
    assert all(
        c["tool"] == "quantscan-tests" and c["email"] == "tests@example.org" for c in replay.calls
    )
    assert replay.calls[0]["params"]["usehistory"] == "y"
    assert replay.calls[0]["params"]["retmax"] == 7  # capped by max_records, not Count (9)
    assert all("id" not in c["params"] for c in replay.calls[1:])
    assert replay.max_tries == 1  # Biopython's own immediate retries are off

    # backoff: the 429 waits at least its Retry-After (2 s), the 500 waits 0.5-1 s (attempt 0)
    backoffs = [s for s in fake.sleeps if s > ncbi.MIN_INTERVAL_NO_KEY + 1e-6]
    assert len(backoffs) == 2
    assert backoffs[0] >= 2.0
    assert 0.5 <= backoffs[1] <= 1.0
    assert "HTTP 429" in caplog.text and "HTTP 500" in caplog.text

    # manifest: accession, length, batch and one sha256 per batch, matching the files
    m = ncbi.Manifest.load(result.manifest)
    assert m.term == TERM and m.accessions == ACCESSIONS
    assert m.batches == [0, 0, 0, 1, 1, 1, 2]
    for b, path in enumerate(result.batches):
        assert m.checksums[b] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert path.read_bytes() == (DATA / f"efetch_batch_{b:05d}.fasta").read_bytes()
    recs = read_fasta(result.batches[0])
    assert m.lengths[:3] == [len(r) for r in recs]
    header = result.manifest.read_text().splitlines()
    assert "accession\tlength\tbatch\tbatch_sha256" in header

    out = ncbi.assemble_fasta(tmp_path, tmp_path / "class.fasta")
    assert [r.id for r in read_fasta(out)] == ACCESSIONS


def test_rate_limit_without_and_with_key(tmp_path, monkeypatch):
    fake = FakeClock()
    client, _ = make_client("cassette_fresh.json", fake)
    ncbi.download_class(QUERY, tmp_path / "a", client, batch_size=3)
    gaps = [b - a for a, b in zip(fake.request_times, fake.request_times[1:], strict=False)]
    assert min(gaps) >= 1 / 3  # at most 3 requests per second without a key
    # back-to-back successes are spaced by the limiter alone (no backoff in between)
    assert min(gaps) == pytest.approx(ncbi.MIN_INTERVAL_NO_KEY)

    monkeypatch.setenv(ncbi.API_KEY_ENV, SECRET)
    fake = FakeClock()
    client, replay = make_client("cassette_fresh.json", fake)
    assert client.has_api_key and replay.api_key == SECRET  # the key is used ...
    ncbi.download_class(QUERY, tmp_path / "b", client, batch_size=3)
    gaps = [b - a for a, b in zip(fake.request_times, fake.request_times[1:], strict=False)]
    assert 0.1 <= min(gaps) < 1 / 3  # ... and buys 10 requests per second


def test_api_key_never_logged_or_written(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(ncbi.API_KEY_ENV, SECRET)
    fake = FakeClock()
    # an error whose reason text echoes the key, as a misbehaving proxy might
    interactions = [
        {"util": "esearch", "status": 500, "reason": f"bad gateway for api_key={SECRET}"},
        {"util": "esearch", "body_file": "esearch_txid687329.xml"},
        *ncbi.ReplayEntrez.from_file(DATA / "cassette_fresh.json")._queue[1:],
    ]
    replay = ncbi.ReplayEntrez(interactions, DATA)
    client = ncbi.EntrezClient(
        "quantscan-tests", "tests@example.org", entrez=replay, clock=fake.clock, sleep=fake.sleep
    )
    log_file = tmp_path / "download.log"
    handler = logging.FileHandler(log_file)
    logging.getLogger("quantscan.apps.viral.ncbi").addHandler(handler)
    try:
        with caplog.at_level(logging.DEBUG):
            ncbi.download_class(QUERY, tmp_path / "out", client, batch_size=3)
            ncbi.assemble_fasta(tmp_path / "out", tmp_path / "out" / "all.fasta")
    finally:
        logging.getLogger("quantscan.apps.viral.ncbi").removeHandler(handler)
        handler.close()
    assert all(c["api_key"] == SECRET for c in replay.calls)
    assert "<redacted>" in caplog.text  # the echoed key was seen and scrubbed
    assert SECRET not in caplog.text
    assert SECRET not in log_file.read_text()
    for path in (tmp_path / "out").iterdir():
        assert SECRET.encode() not in path.read_bytes(), path


def test_api_key_not_in_error_message(monkeypatch):
    monkeypatch.setenv(ncbi.API_KEY_ENV, SECRET)
    fake = FakeClock()
    replay = ncbi.ReplayEntrez(
        [{"util": "esearch", "status": 400, "reason": f"Bad Request api_key={SECRET}"}]
    )
    client = ncbi.EntrezClient(
        "t", "t@example.org", entrez=replay, clock=fake.clock, sleep=fake.sleep
    )
    with pytest.raises(ncbi.NcbiError) as info:
        client.esearch(QUERY)
    assert "HTTP 400" in str(info.value) and "not retried" in str(info.value)
    assert SECRET not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no URL-bearing cause
    assert len(replay.calls) == 1  # 4xx other than 429 is not retried


# ----------------------------------------------------------------------------- bad batches


def test_truncated_short_and_incomplete_batches_are_retried(tmp_path, caplog):
    fake = FakeClock()
    client, replay = make_client("cassette_truncated.json", fake)
    with caplog.at_level(logging.WARNING, logger="quantscan.apps.viral.ncbi"):
        result = ncbi.download_class(QUERY, tmp_path, client, batch_size=3)
    assert replay.remaining == 0
    assert "newline (truncated)" in caplog.text
    assert "2 records, expected 3" in caplog.text
    assert "incomplete read" in caplog.text
    # exponential: the three retries of batch 1 waited about 1, 2, 4 s (jittered to 50-100 %)
    backoffs = [s for s in fake.sleeps if s > ncbi.MIN_INTERVAL_NO_KEY + 1e-6]
    assert len(backoffs) == 3
    for attempt, s in enumerate(backoffs):
        assert 0.5 * 2**attempt <= s <= 2**attempt
    assert result.batches[1].read_bytes() == (DATA / "efetch_batch_00001.fasta").read_bytes()


def test_check_batch_rejects_wrong_records():
    text = (DATA / "efetch_batch_00000.fasta").read_text()
    got = ncbi.check_batch(text, ACCESSIONS[:3])
    assert [a for a, _ in got] == ACCESSIONS[:3]
    with pytest.raises(ncbi.BatchMismatch, match="accessions differ"):
        ncbi.check_batch(text, ACCESSIONS[1:4])
    with pytest.raises(ncbi.BatchMismatch, match="manifest says"):
        ncbi.check_batch(text, ACCESSIONS[:3], lengths=[got[0][1] + 1, None, None])
    with pytest.raises(ncbi.BatchMismatch, match="outside"):
        ncbi.check_batch(text, ACCESSIONS[:3], length_range=(got[0][1] + 1, None))
    with pytest.raises(ncbi.BatchMismatch, match="not FASTA"):
        ncbi.check_batch("<html>Service unavailable</html>\n", ACCESSIONS[:3])


# ----------------------------------------------------------------------------- failure and resume


def test_failure_then_resume_by_accession(tmp_path):
    fake = FakeClock()
    client, replay = make_client("cassette_fail.json", fake, max_retries=3)
    with pytest.raises(ncbi.NcbiError, match=r"batch 1 .*failed after 4 attempts.*HTTP 503"):
        ncbi.download_class(QUERY, tmp_path, client, batch_size=3)
    assert replay.remaining == 0
    # the plan and batch 0 survived the failure
    m = ncbi.Manifest.load(tmp_path / ncbi.MANIFEST_NAME)
    assert m.accessions == ACCESSIONS and set(m.checksums) == {0}
    assert m.lengths[3:] == [None] * 4
    assert not ncbi.batch_path(tmp_path, 1).exists()
    with pytest.raises(ncbi.NcbiError, match="never fetched"):
        ncbi.assemble_fasta(tmp_path, tmp_path / "all.fasta")

    # rerun: no esearch, batch 0 reused after its checksum check, 1 and 2 fetched by id
    fake = FakeClock()
    client, replay = make_client("cassette_resume.json", fake)
    result = ncbi.download_class(QUERY, tmp_path, client, batch_size=3)
    assert replay.remaining == 0
    assert result.reused == [0] and result.fetched == [1, 2]
    assert [c["util"] for c in replay.calls] == ["efetch", "efetch"]
    assert replay.calls[0]["params"]["id"] == ",".join(ACCESSIONS[3:6])
    m = ncbi.Manifest.load(result.manifest)
    assert set(m.checksums) == {0, 1, 2} and None not in m.lengths

    # third run: everything verified, nothing fetched
    client, replay = make_client("cassette_resume.json", FakeClock())
    result = ncbi.download_class(QUERY, tmp_path, client, batch_size=3)
    assert result.fetched == [] and result.reused == [0, 1, 2] and replay.calls == []


def test_corrupted_batch_is_refetched_and_drift_detected(tmp_path):
    client, _ = make_client("cassette_fresh.json", FakeClock())
    ncbi.download_class(QUERY, tmp_path, client, batch_size=3)
    path = ncbi.batch_path(tmp_path, 2)
    good = path.read_bytes()
    path.write_bytes(good.replace(b"A", b"C", 1))
    with pytest.raises(InputFormatError, match="sha256 differs"):
        ncbi.assemble_fasta(tmp_path, tmp_path / "all.fasta")

    # refetch by id restores the file
    replay = ncbi.ReplayEntrez(
        [
            {
                "util": "efetch",
                "expect": {"id": ACCESSIONS[6]},
                "body_file": "efetch_batch_00002.fasta",
            }
        ],
        DATA,
    )
    client = ncbi.EntrezClient("t", "t@example.org", entrez=replay, sleep=lambda s: None)
    result = ncbi.download_class(QUERY, tmp_path, client, batch_size=3)
    assert result.fetched == [2] and path.read_bytes() == good

    # NCBI now answers with a different title line for the same record: drift
    path.write_bytes(b"")
    changed = good.replace(b"complete genome", b"complete genome, revised")
    replay = ncbi.ReplayEntrez([{"util": "efetch", "body": changed.decode()}] * 2)
    client = ncbi.EntrezClient("t", "t@example.org", entrez=replay, sleep=lambda s: None)
    with pytest.raises(ncbi.NcbiError, match="differs from the recorded sha256"):
        ncbi.download_class(QUERY, tmp_path, client, batch_size=3)
    result = ncbi.download_class(QUERY, tmp_path, client, on_drift="update")
    assert path.read_bytes() == changed
    assert ncbi.Manifest.load(result.manifest).checksums[2] == hashlib.sha256(changed).hexdigest()


def test_manifest_for_another_query_is_refused(tmp_path):
    client, _ = make_client("cassette_fresh.json", FakeClock())
    ncbi.download_class(QUERY, tmp_path, client, batch_size=3)
    other = ncbi.Query(taxon_id=1458186, min_length=1000, max_length=3500)
    with pytest.raises(ConfigError, match="delete the manifest"):
        ncbi.download_class(other, tmp_path, client)


def test_bad_manifest_names_file_and_line(tmp_path):
    path = tmp_path / ncbi.MANIFEST_NAME
    path.write_text(
        f"# db: nucleotide\n# term: {TERM}\naccession\tlength\tbatch\tbatch_sha256\n"
        "ZZ1.1\t1200\t0\t\nZZ2.1\tlong\t0\t\n"
    )
    with pytest.raises(InputFormatError, match=r"manifest.tsv:5: record 'ZZ2.1'"):
        ncbi.Manifest.load(path)


def test_esearch_error_is_not_retried():
    replay = ncbi.ReplayEntrez([{"util": "esearch", "body_file": "esearch_error.xml"}], DATA)
    client = ncbi.EntrezClient("t", "t@example.org", entrez=replay, sleep=lambda s: None)
    with pytest.raises(ncbi.NcbiError, match="rejected the search.*unbalanced"):
        client.esearch(QUERY)


def test_network_error_is_retried():
    fake = FakeClock()
    replay = ncbi.ReplayEntrez(
        [
            {"util": "esearch", "network_error": "[Errno 104] Connection reset by peer"},
            {"util": "esearch", "body_file": "esearch_txid687329.xml"},
        ],
        DATA,
    )
    client = ncbi.EntrezClient(
        "t", "t@example.org", entrez=replay, clock=fake.clock, sleep=fake.sleep
    )
    found = client.esearch(QUERY)
    assert found.accessions == ACCESSIONS and found.count == 9
    assert found.webenv.startswith("MCID_") and found.query_key == "1"
    assert replay.remaining == 0 and max(fake.sleeps) >= 0.5  # backed off once


def test_replay_refuses_unexpected_calls():
    replay = ncbi.ReplayEntrez.from_file(DATA / "cassette_resume.json")
    with pytest.raises(ncbi.ReplayError, match="id="):
        replay.efetch(db="nucleotide", id="XX1.1", rettype="fasta")


# ----------------------------------------------------------------------------- real Bio.Entrez


def test_real_bio_entrez_requests(tmp_path, monkeypatch):
    """Drive the real Bio.Entrez module with urllib's urlopen replaced: checks the parameters
    Biopython actually sends (tool, email, key, history) and that its globals are set."""
    import email.message
    import io
    import types
    from urllib.parse import parse_qs, urlsplit

    from Bio import Entrez

    for name in ("tool", "email", "api_key", "max_tries"):
        monkeypatch.setattr(Entrez, name, getattr(Entrez, name))  # restored after the test
    monkeypatch.setattr(
        Entrez, "time", types.SimpleNamespace(time=lambda: 0.0, sleep=lambda s: None)
    )
    monkeypatch.setenv(ncbi.API_KEY_ENV, SECRET)

    sent = []
    bodies = [
        ("xml", DATA / "esearch_txid687329.xml"),
        ("plain", DATA / "efetch_batch_00000.fasta"),
        ("plain", DATA / "efetch_batch_00001.fasta"),
        ("plain", DATA / "efetch_batch_00002.fasta"),
    ]

    class Response(io.BytesIO):
        def __init__(self, body, subtype, url):
            super().__init__(body)
            self.headers = email.message.Message()
            self.headers["Content-Type"] = f"text/{subtype}"
            self.url = url

    def fake_urlopen(request):
        url = request.full_url
        query = request.data.decode() if request.data else urlsplit(url).query
        sent.append((urlsplit(url).path, {k: v[0] for k, v in parse_qs(query).items()}))
        subtype, path = bodies.pop(0)
        return Response(path.read_bytes(), subtype, url)

    monkeypatch.setattr(Entrez, "urlopen", fake_urlopen)
    fake = FakeClock()
    client = ncbi.EntrezClient(
        "quantscan-tests", "tests@example.org", clock=fake.clock, sleep=fake.sleep
    )
    assert client.entrez is Entrez and Entrez.max_tries == 1
    result = ncbi.download_class(QUERY, tmp_path, client, batch_size=3)
    assert result.n_records == 7 and not bodies
    path, params = sent[0]
    assert path.endswith("esearch.fcgi")
    assert params["term"] == TERM and params["usehistory"] == "y" and params["idtype"] == "acc"
    for _, params in sent:
        assert params["tool"] == "quantscan-tests" and params["email"] == "tests@example.org"
        assert params["api_key"] == SECRET
    assert [p["retstart"] for _, p in sent[1:]] == ["0", "3", "6"]
    assert all(p["WebEnv" if "WebEnv" in p else "webenv"] for _, p in sent[1:])
