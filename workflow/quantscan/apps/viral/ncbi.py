"""Download one class's nucleotide sequences from NCBI with ``Bio.Entrez``, reproducibly.

1. **Plan**: ``esearch`` (``usehistory="y"``, ``idtype="acc"``) resolves the query into accession
   numbers, frozen into a manifest (TSV: accession, length, batch, batch_sha256) before any
   sequence is fetched.
2. **Fetch**: ``efetch`` (FASTA) in fixed batches, from the history server (WebEnv/query_key,
   retstart/retmax) on the first run and by accession (``id=``) on reruns. Each batch is checked
   against its manifest slice (record count, accession set, lengths, a final newline) because
   NCBI can answer HTTP 200 with a truncated body; a failed check is retried like an HTTP error.
   Each good batch is written atomically to ``batch_NNNNN.fasta`` and its sha256 and record
   lengths go into the manifest at once, so a failed run resumes at the first missing batch.
3. **Verify**: a rerun keeps every batch whose file matches its recorded checksum and fetches
   only the others; :func:`assemble_fasta` checks all checksums again before concatenating.

The HTTP layer is injectable: :class:`EntrezClient` takes the ``Bio.Entrez`` module or anything
with the same ``esearch``/``efetch`` functions (:class:`ReplayEntrez` answers from a recorded
cassette), plus a clock and a sleep function, so tests need neither network nor real waiting.

The API key comes only from the ``NCBI_API_KEY`` environment variable. It is handed to
``Bio.Entrez`` and scrubbed from every message this module logs or raises (urllib error objects
carry the full request URL, key included, so they are never re-raised as causes).
"""

from __future__ import annotations

import email.message
import hashlib
import http.client
import io
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode

from Bio import SeqIO

from ...atomic import atomic_path
from ...errors import ConfigError, InputFormatError, QuantscanError
from ...seeds import derive_seed

API_KEY_ENV = "NCBI_API_KEY"
#: NCBI's cap on ``retmax`` for one esearch call
ESEARCH_MAX = 10_000
MANIFEST_NAME = "manifest.tsv"
MANIFEST_COLUMNS = ("accession", "length", "batch", "batch_sha256")
#: seconds between requests: NCBI allows 3/s without a key and 10/s with one; the margins are
#: Biopython's (0.37 s), which it found more reliable than exactly 1/3 s
MIN_INTERVAL_NO_KEY = 0.37
MIN_INTERVAL_KEY = 0.11

log = logging.getLogger("quantscan.apps.viral.ncbi")


class NcbiError(QuantscanError):
    """A download failed (after retries) or NCBI's answer does not match the manifest."""


class ReplayError(QuantscanError):
    """A replayed call does not match the recorded cassette (a bug in the test or the code)."""


class BatchMismatch(Exception):
    """An answer that arrived but is wrong (short, truncated, other records); the client
    retries it like an HTTP error."""


# ----------------------------------------------------------------------------- query


def build_term(
    taxon_id: int,
    min_length: int | None = None,
    max_length: int | None = None,
    extra_term: str | None = None,
) -> str:
    """Entrez term: ``txid<id>[Organism:exp] AND <min>:<max>[SLEN] AND (<extra>)``."""
    parts = [f"txid{int(taxon_id)}[Organism:exp]"]
    if min_length is not None or max_length is not None:
        lo = 1 if min_length is None else int(min_length)
        hi = 1_000_000_000 if max_length is None else int(max_length)
        parts.append(f"{lo}:{hi}[SLEN]")
    if extra_term:
        parts.append(f"({extra_term})")
    return " AND ".join(parts)


@dataclass(frozen=True)
class Query:
    """One class's download: an NCBI taxon, a length window, an optional extra term, a cap."""

    taxon_id: int
    min_length: int | None = None
    max_length: int | None = None
    extra_term: str | None = None
    max_records: int | None = None
    db: str = "nucleotide"

    def __post_init__(self):
        if int(self.taxon_id) < 1:
            raise ConfigError(
                f"NCBI query: taxon_id must be a positive integer, got {self.taxon_id}"
            )
        lo, hi = self.min_length, self.max_length
        if (lo is not None and lo < 1) or (lo is not None and hi is not None and lo > hi):
            raise ConfigError(f"NCBI query txid{self.taxon_id}: bad length range {lo}..{hi}")
        if self.extra_term is not None and any(c in self.extra_term for c in "\t\r\n"):
            # the term is stored on one line of the manifest
            raise ConfigError(f"NCBI query txid{self.taxon_id}: extra_term must be one line")
        if self.max_records is not None and self.max_records < 1:
            raise ConfigError(
                f"NCBI query txid{self.taxon_id}: max_records must be >= 1, got {self.max_records}"
            )

    @property
    def term(self) -> str:
        return build_term(self.taxon_id, self.min_length, self.max_length, self.extra_term)

    @classmethod
    def from_config(cls, cfg: Mapping, where: str = "ncbi") -> Query:
        """From a config mapping with keys ``taxon_id`` and optionally ``min_length``,
        ``max_length``, ``extra_term``, ``max_records``, ``db``."""
        known = {"taxon_id", "min_length", "max_length", "extra_term", "max_records", "db"}
        unknown = set(cfg) - known
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        if "taxon_id" not in cfg:
            raise ConfigError(f"{where}: taxon_id is required")
        try:
            return cls(
                taxon_id=int(cfg["taxon_id"]),
                min_length=None if cfg.get("min_length") is None else int(cfg["min_length"]),
                max_length=None if cfg.get("max_length") is None else int(cfg["max_length"]),
                extra_term=cfg.get("extra_term") or None,
                max_records=None if cfg.get("max_records") is None else int(cfg["max_records"]),
                db=str(cfg.get("db", "nucleotide")),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None


# ----------------------------------------------------------------------------- HTTP client


class RateLimiter:
    """At least ``interval`` seconds between the starts of consecutive requests."""

    def __init__(self, interval: float, clock: Callable[[], float], sleep: Callable[[float], None]):
        self.interval = float(interval)
        self.clock = clock
        self.sleep = sleep
        self._last: float | None = None

    def wait(self) -> None:
        now = self.clock()
        if self._last is not None:
            gap = self._last + self.interval - now
            if gap > 0:
                self.sleep(gap)
                now = max(self.clock(), self._last + self.interval)
        self._last = now


@dataclass(frozen=True)
class SearchResult:
    count: int
    accessions: list[str]
    webenv: str
    query_key: str


class EntrezClient:
    """Rate-limited, retrying wrapper around ``Bio.Entrez`` (or a stand-in with its interface).

    Retries HTTP 429 and 5xx, dropped connections, incomplete reads and bad batches, waiting
    ``backoff_base * 2**attempt`` seconds (capped at ``backoff_max``, jittered to 50-100 %, at
    least a 429's ``Retry-After``), at most ``max_retries`` times; then raises NcbiError. Other
    HTTP 4xx errors are not retried. ``Bio.Entrez``'s own retries are switched off
    (``max_tries = 1``) because it retries 5xx/429 at once, without waiting.
    """

    def __init__(
        self,
        tool: str,
        email: str,
        *,
        entrez=None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        seed: int = 0,
        logger: logging.Logger | None = None,
    ):
        if not tool or not email or "@" not in email:
            raise ConfigError(
                f"NCBI requires a tool name and a contact e-mail; got tool={tool!r}, "
                f"email={email!r}"
            )
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        if entrez is None:
            from Bio import Entrez as entrez
        self.entrez = entrez
        self._api_key = os.environ.get(API_KEY_ENV) or None
        entrez.tool = tool
        entrez.email = email
        entrez.api_key = self._api_key
        entrez.max_tries = 1
        self.sleep = sleep
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.rng = random.Random(derive_seed(seed, "ncbi-backoff"))
        self.log = logger or log
        interval = MIN_INTERVAL_KEY if self._api_key else MIN_INTERVAL_NO_KEY
        self.limiter = RateLimiter(interval, clock, sleep)

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    def redact(self, text: str) -> str:
        """``text`` with the API key (if any) blanked out."""
        text = str(text)
        if self._api_key:
            text = text.replace(self._api_key, "<redacted>")
        return re.sub(r"api_key=[^&\s]+", "api_key=<redacted>", text)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.backoff_max, self.backoff_base * 2.0**attempt)
        delay *= 0.5 + 0.5 * self.rng.random()  # jitter: clients that failed together drift apart
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    def request(self, util: str, what: str, parse: Callable[[bytes], object], **params):
        """Call ``entrez.<util>(**params)``, read the whole body and ``parse`` it, with retries.

        ``parse`` raises ``BatchMismatch`` for an answer to retry. ``what`` names the request in
        messages (it must not contain the key).
        """
        last = ""
        for attempt in range(self.max_retries + 1):
            self.limiter.wait()
            retry_after = None
            try:
                handle = getattr(self.entrez, util)(**params)
                try:
                    # read inside the retry: IncompleteRead surfaces here, not at the request
                    data = handle.read()
                finally:
                    close = getattr(handle, "close", None)
                    if close:
                        close()
                if isinstance(data, str):
                    data = data.encode("utf-8")
                return parse(data)
            except HTTPError as exc:
                if exc.code != 429 and not 500 <= exc.code < 600:
                    raise NcbiError(
                        self.redact(f"{what}: HTTP {exc.code} {exc.reason} (not retried)")
                    ) from None
                last = f"HTTP {exc.code} {exc.reason}"
                retry_after = _retry_after(exc)
            except http.client.IncompleteRead as exc:
                last = f"incomplete read ({len(exc.partial)} bytes)"
            except (http.client.HTTPException, OSError) as exc:
                # URLError, dropped connections, timeouts, TLS errors while reading the body
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            except BatchMismatch as exc:
                last = str(exc)
            last = self.redact(last)
            if attempt == self.max_retries:
                break
            delay = self._delay(attempt, retry_after)
            self.log.warning(
                "%s: attempt %d of %d failed (%s); retrying in %.1f s",
                what,
                attempt + 1,
                self.max_retries + 1,
                last,
                delay,
            )
            self.sleep(delay)
        raise NcbiError(f"{what}: failed after {self.max_retries + 1} attempts; last error: {last}")

    # -- E-utilities -------------------------------------------------------------------------

    def _parse_esearch(self, what: str) -> Callable[[bytes], dict]:
        def parse(data: bytes) -> dict:
            from Bio import Entrez

            try:
                result = Entrez.read(io.BytesIO(data))
            except RuntimeError as exc:  # an <ERROR> element: a bad query, not a glitch
                raise NcbiError(self.redact(f"{what}: NCBI rejected the search: {exc}")) from None
            except Exception as exc:  # truncated or non-XML body: retry
                raise BatchMismatch(f"unreadable esearch answer ({type(exc).__name__})") from None
            if "Count" not in result or "IdList" not in result:
                raise BatchMismatch("esearch answer without Count or IdList")
            return result

        return parse

    def esearch(self, query: Query) -> SearchResult:
        """Resolve the query into (at most ``max_records``) accession.version ids, keeping the
        result on the history server."""
        term = query.term
        what = f"esearch {term!r}"
        self.log.info("%s in %s", what, query.db)
        first_max = min(query.max_records or ESEARCH_MAX, ESEARCH_MAX)
        first = self.request(
            "esearch",
            what,
            self._parse_esearch(what),
            db=query.db,
            term=term,
            usehistory="y",
            idtype="acc",
            retstart=0,
            retmax=first_max,
        )
        count = int(first["Count"])
        wanted = count if query.max_records is None else min(count, query.max_records)
        ids = [str(i) for i in first["IdList"]][:wanted]
        while len(ids) < wanted:  # more than 10,000 ids: page through the same search
            page = self.request(
                "esearch",
                f"{what} from {len(ids)}",
                self._parse_esearch(what),
                db=query.db,
                term=term,
                idtype="acc",
                retstart=len(ids),
                retmax=min(ESEARCH_MAX, wanted - len(ids)),
            )
            new = [str(i) for i in page["IdList"]]
            if not new:
                raise NcbiError(f"{what}: Count is {count} but only {len(ids)} ids came back")
            ids += new
        if len(set(ids)) != len(ids):
            raise NcbiError(f"{what}: the id list repeats accessions")
        webenv, key = str(first.get("WebEnv", "")), str(first.get("QueryKey", ""))
        self.log.info("%s: %d matches, planning %d", what, count, len(ids))
        return SearchResult(count, ids, webenv, key)

    def efetch_batch(
        self,
        accessions: Sequence[str],
        *,
        what: str,
        db: str = "nucleotide",
        history: tuple[str, str, int] | None = None,
        lengths: Sequence[int | None] | None = None,
        length_range: tuple[int | None, int | None] = (None, None),
    ) -> tuple[str, list[tuple[str, int]]]:
        """FASTA text of exactly ``accessions`` and its (accession, length) pairs, in file order.

        From the history server when ``history=(webenv, query_key, retstart)``, else by id.
        """
        params = {"db": db, "rettype": "fasta", "retmode": "text"}
        if history is not None:
            webenv, query_key, retstart = history
            params.update(webenv=webenv, query_key=query_key, retstart=retstart)
            params["retmax"] = len(accessions)
        else:
            params["id"] = ",".join(accessions)

        def parse(data: bytes):
            text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
            return text, check_batch(text, accessions, lengths, length_range)

        return self.request("efetch", what, parse, **params)


def _retry_after(exc: HTTPError) -> float | None:
    headers = getattr(exc, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: fall back to the backoff
        return None


def check_batch(
    text: str,
    accessions: Sequence[str],
    lengths: Sequence[int | None] | None = None,
    length_range: tuple[int | None, int | None] = (None, None),
) -> list[tuple[str, int]]:
    """Check a FASTA answer against the accessions asked for; raise ``BatchMismatch`` if it is
    short, truncated or holds other records. Returns (accession, length) in file order."""
    if not text.strip():
        raise BatchMismatch("empty answer")
    if not text.lstrip().startswith(">"):
        raise BatchMismatch(f"answer is not FASTA (starts {text.lstrip()[:30]!r})")
    if not text.endswith("\n"):
        raise BatchMismatch("answer does not end with a newline (truncated)")
    try:
        got = [(r.id, len(r.seq)) for r in SeqIO.parse(io.StringIO(text), "fasta")]
    except ValueError as exc:
        raise BatchMismatch(f"unreadable FASTA ({str(exc).splitlines()[0]})") from None
    if len(got) != len(accessions):
        raise BatchMismatch(f"{len(got)} records, expected {len(accessions)}")
    ids = [g[0] for g in got]
    if set(ids) != set(accessions) or len(set(ids)) != len(ids):
        missing = sorted(set(accessions) - set(ids))[:3]
        extra = sorted(set(ids) - set(accessions))[:3]
        raise BatchMismatch(
            f"accessions differ from the manifest (missing {missing}, extra {extra})"
        )
    lo, hi = length_range
    expected = dict(zip(accessions, lengths, strict=True)) if lengths is not None else {}
    for acc, n in got:
        want = expected.get(acc)
        if want is not None and n != want:
            raise BatchMismatch(f"{acc}: {n} bp, manifest says {want} bp")
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise BatchMismatch(f"{acc}: {n} bp outside the query's {lo}..{hi} bp (truncated?)")
    return got


# ----------------------------------------------------------------------------- manifest


@dataclass
class Manifest:
    """Frozen plan of a download: accessions in batches, with lengths and per-batch sha256 once
    each batch is fetched (``None`` before)."""

    term: str
    db: str
    accessions: list[str]
    batches: list[int]
    lengths: list[int | None]
    checksums: dict[int, str] = field(default_factory=dict)

    @classmethod
    def plan(cls, term: str, db: str, accessions: Sequence[str], batch_size: int) -> Manifest:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        acc = list(accessions)
        return cls(term, db, acc, [i // batch_size for i in range(len(acc))], [None] * len(acc))

    @property
    def n_batches(self) -> int:
        return max(self.batches) + 1 if self.batches else 0

    def rows(self, batch: int) -> list[int]:
        return [i for i, b in enumerate(self.batches) if b == batch]

    def save(self, path: str | os.PathLike) -> None:
        lines = [
            "# quantscan NCBI accession manifest: one row per record; batch_sha256 is the sha256",
            "# of batch_<batch:05d>.fasta (empty until the batch is fetched)",
            f"# db: {self.db}",
            f"# term: {self.term}",
            "\t".join(MANIFEST_COLUMNS),
        ]
        for acc, n, b in zip(self.accessions, self.lengths, self.batches, strict=True):
            lines.append(f"{acc}\t{'NA' if n is None else n}\t{b}\t{self.checksums.get(b, '')}")
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(lines) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Manifest:
        path = Path(path)
        meta: dict[str, str] = {}
        header = None
        acc, lengths, batches, sums = [], [], [], {}
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            if line.startswith("#"):
                key, sep, value = line[1:].partition(":")
                if sep and key.strip() in ("db", "term"):
                    meta[key.strip()] = value.strip()
                continue
            if not line.strip():
                continue
            fields_ = line.split("\t")
            if header is None:
                header = tuple(fields_)
                if header != MANIFEST_COLUMNS:
                    raise InputFormatError(
                        f"{path}:{lineno}: columns {list(header)}, "
                        f"expected {list(MANIFEST_COLUMNS)}"
                    )
                continue
            if len(fields_) != len(MANIFEST_COLUMNS):
                raise InputFormatError(f"{path}:{lineno}: {len(fields_)} fields, expected 4")
            a, n, b, s = fields_
            try:
                b_int = int(b)
                n_int = None if n == "NA" else int(n)
            except ValueError:
                raise InputFormatError(
                    f"{path}:{lineno}: record {a!r}: length {n!r} or batch {b!r} is not an integer"
                ) from None
            if s:
                if not re.fullmatch(r"[0-9a-f]{64}", s):
                    raise InputFormatError(f"{path}:{lineno}: record {a!r}: bad sha256 {s!r}")
                if sums.setdefault(b_int, s) != s:
                    raise InputFormatError(
                        f"{path}:{lineno}: record {a!r}: batch {b_int} has two different sha256"
                    )
            acc.append(a)
            lengths.append(n_int)
            batches.append(b_int)
        if header is None or "term" not in meta or "db" not in meta:
            raise InputFormatError(f"{path}: not a manifest (no header, '# db:' or '# term:' line)")
        if batches != sorted(batches) or (batches and set(batches) != set(range(batches[-1] + 1))):
            raise InputFormatError(f"{path}: batch numbers must run 0, 1, 2, ... in order")
        if len(set(acc)) != len(acc):
            raise InputFormatError(f"{path}: repeated accessions")
        return cls(meta["term"], meta["db"], acc, batches, lengths, sums)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def batch_path(outdir: str | os.PathLike, batch: int) -> Path:
    return Path(outdir) / f"batch_{batch:05d}.fasta"


@dataclass(frozen=True)
class DownloadResult:
    manifest: Path
    batches: list[Path]
    n_records: int
    fetched: list[int]
    reused: list[int]


def download_class(
    query: Query,
    outdir: str | os.PathLike,
    client: EntrezClient,
    *,
    batch_size: int = 500,
    on_drift: str = "error",
) -> DownloadResult:
    """Plan (or reload) the manifest in ``outdir`` and fetch every batch that is missing or fails
    its checksum. ``on_drift``: what to do when a refetched batch differs from its recorded
    checksum (NCBI changed a record): ``"error"`` or ``"update"`` the checksum with a warning."""
    if on_drift not in ("error", "update"):
        raise ConfigError(f"on_drift must be 'error' or 'update', got {on_drift!r}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    mpath = outdir / MANIFEST_NAME
    history = None
    if mpath.exists():
        manifest = Manifest.load(mpath)
        if manifest.term != query.term or manifest.db != query.db:
            raise ConfigError(
                f"{mpath}: planned for {manifest.db} {manifest.term!r}, but the query is now "
                f"{query.db} {query.term!r}; delete the manifest to plan again"
            )
        client.log.info(
            "%s: resuming from the manifest (%d records)", mpath, len(manifest.accessions)
        )
    else:
        found = client.esearch(query)
        if not found.accessions:
            raise NcbiError(f"esearch {query.term!r}: no records match")
        manifest = Manifest.plan(query.term, query.db, found.accessions, batch_size)
        manifest.save(mpath)
        history = (found.webenv, found.query_key) if found.webenv and found.query_key else None

    fetched, reused = [], []
    for b in range(manifest.n_batches):
        path = batch_path(outdir, b)
        recorded = manifest.checksums.get(b)
        if recorded and path.exists():
            if sha256_file(path) == recorded:
                reused.append(b)
                continue
            client.log.warning("%s: checksum mismatch, fetching the batch again", path)
        rows = manifest.rows(b)
        accs = [manifest.accessions[i] for i in rows]
        what = f"batch {b} ({accs[0]}..{accs[-1]}, {len(accs)} records)"
        hist = (*history, rows[0]) if history is not None else None
        client.log.info("%s: efetch %s", what, "from history" if hist else "by accession")
        text, got = client.efetch_batch(
            accs,
            what=what,
            db=query.db,
            history=hist,
            lengths=[manifest.lengths[i] for i in rows],
            length_range=(query.min_length, query.max_length),
        )
        data = text.encode("utf-8")
        digest = hashlib.sha256(data).hexdigest()
        if recorded and digest != recorded:
            msg = f"{what}: NCBI's answer differs from the recorded sha256 (records changed)"
            if on_drift == "error":
                raise NcbiError(msg + "; rerun with on_drift='update' to accept it")
            client.log.warning("%s; accepting the new content", msg)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        got_len = dict(got)
        for i in rows:
            manifest.lengths[i] = got_len[manifest.accessions[i]]
        manifest.checksums[b] = digest
        manifest.save(mpath)  # after every batch: a later failure keeps this one
        fetched.append(b)
    paths = [batch_path(outdir, b) for b in range(manifest.n_batches)]
    return DownloadResult(mpath, paths, len(manifest.accessions), fetched, reused)


def assemble_fasta(outdir: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Concatenate the batches of ``outdir`` in manifest order into ``out_path`` (atomically),
    after checking every batch against its recorded sha256."""
    outdir = Path(outdir)
    manifest = Manifest.load(outdir / MANIFEST_NAME)
    parts = []
    for b in range(manifest.n_batches):
        path = batch_path(outdir, b)
        recorded = manifest.checksums.get(b)
        if not recorded:
            raise NcbiError(f"{path}: batch {b} was never fetched; run the download again")
        if not path.exists():
            raise NcbiError(f"{path}: batch file missing; run the download again")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != recorded:
            raise InputFormatError(f"{path}: sha256 differs from the manifest (file corrupted?)")
        parts.append(data if data.endswith(b"\n") else data + b"\n")
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(b"".join(parts))
    return Path(out_path)


# ----------------------------------------------------------------------------- replay


class _IncompleteHandle(io.BytesIO):
    def read(self, *args):
        raise http.client.IncompleteRead(self.getvalue()[: len(self.getvalue()) // 2])


class ReplayEntrez:
    """Stands in for ``Bio.Entrez``: answers ``esearch``/``efetch`` from a recorded cassette.

    A cassette is a list of interactions, answered in order::

        {"util": "efetch", "expect": {"retstart": 0}, "status": 200, "body_file": "x.fasta"}

    ``expect`` lists parameters the call must carry (compared as strings); ``status`` other than
    200 raises ``HTTPError`` (``headers`` e.g. ``{"Retry-After": "2"}``); ``body_file`` is
    relative to the cassette, or ``body`` gives the text inline; ``"incomplete_read": true`` makes
    ``read()`` raise ``IncompleteRead``; ``"network_error": "reason"`` raises ``URLError``. ``calls`` records every call with the module settings
    (tool, email, api_key) in force at the time.
    """

    URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/{util}.fcgi"

    def __init__(self, interactions: Sequence[Mapping], base_dir: str | os.PathLike = "."):
        self.tool = "biopython"
        self.email = None
        self.api_key = None
        self.max_tries = 3
        self.base_dir = Path(base_dir)
        self._queue = list(interactions)
        self.calls: list[dict] = []

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ReplayEntrez:
        path = Path(path)
        data = json.loads(path.read_text())
        return cls(data["interactions"], path.parent)

    @property
    def remaining(self) -> int:
        return len(self._queue)

    def esearch(self, db, term, **params):
        return self._answer("esearch", {"db": db, "term": term, **params})

    def efetch(self, db, **params):
        return self._answer("efetch", {"db": db, **params})

    def _answer(self, util: str, params: dict):
        self.calls.append(
            {
                "util": util,
                "params": dict(params),
                "tool": self.tool,
                "email": self.email,
                "api_key": self.api_key,
            }
        )
        if not self._queue:
            raise ReplayError(f"unexpected {util} call {params}: the cassette is used up")
        it = self._queue.pop(0)
        if it["util"] != util:
            raise ReplayError(f"cassette expects {it['util']}, got {util} {params}")
        for key, want in it.get("expect", {}).items():
            if str(params.get(key)) != str(want):
                raise ReplayError(f"{util}: parameter {key}={params.get(key)!r}, expected {want!r}")
        if "network_error" in it:  # no HTTP answer at all (refused, reset, DNS)
            raise URLError(it["network_error"])
        status = int(it.get("status", 200))
        # like urllib: the error carries the full URL, API key included
        query = {**params, "tool": self.tool, "email": self.email, "api_key": self.api_key}
        url = self.URL.format(util=util) + "?" + urlencode({k: v for k, v in query.items() if v})
        if status != 200:
            headers = email.message.Message()
            for k, v in it.get("headers", {}).items():
                headers[k] = str(v)
            reason = it.get("reason", http.client.responses.get(status, "Error"))
            raise HTTPError(url, status, reason, headers, None)
        if "body_file" in it:
            body = (self.base_dir / it["body_file"]).read_bytes()
        else:
            body = str(it.get("body", "")).encode()
        if it.get("incomplete_read"):
            return _IncompleteHandle(body)
        return io.BytesIO(body)


__all__ = [
    "API_KEY_ENV",
    "MANIFEST_NAME",
    "BatchMismatch",
    "DownloadResult",
    "EntrezClient",
    "Manifest",
    "NcbiError",
    "Query",
    "RateLimiter",
    "ReplayEntrez",
    "ReplayError",
    "SearchResult",
    "assemble_fasta",
    "batch_path",
    "build_term",
    "check_batch",
    "download_class",
    "sha256_file",
]
