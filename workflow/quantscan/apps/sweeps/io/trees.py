"""Read tskit tree sequences (a .trees file, a kastore archive, or a ``tskit.TreeSequence`` such as
msprime returns): sample names and ploidy from tskit individuals, the chromosome name from the
top-level metadata or the file stem (``_ts_chrom``), genotypes decoded by tskit
(``TreeSequence.variants``) in chunks of sites.

Two results, one decoding pass (``_decode``): ``read_trees`` gives a ``HaplotypeData`` (1 byte per
kept genotype, missing calls as ``MISSING``); ``read_trees_packed`` gives the scan's
``scan_inputs.PackedChromosome`` directly (0/1 bit-packed, missing calls as 0, with the missing
calls per haplotype that ``check_usable`` needs), so a whole chromosome never exists unpacked:
peak memory is the tree sequence, the packed matrix (n_sites x n_haplotypes / 8 bytes) and one
chunk. ``read_trees_packed`` can decode parts of the genome in several processes
(``concurrent.futures.ProcessPoolExecutor``; tskit's decoding holds the GIL, so threads do not help).
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np

from quantscan.errors import InputFormatError

from .haplotypes import MISSING, HaplotypeData, _log_stats

#: sites decoded per chunk: 2^16 sites x 200 haplotypes is 13 MB of int8 genotypes
CHUNK_SITES = 1 << 16


def _ts_samples(ts) -> tuple[list[str], int]:
    """Sample names and ploidy: individuals when every sample node belongs to one, contiguously."""
    nodes = ts.samples()
    ind = ts.nodes_individual[nodes]
    if nodes.size and np.all(ind >= 0):
        starts = np.flatnonzero(np.r_[True, ind[1:] != ind[:-1]])
        runs = np.diff(np.r_[starts, ind.size])
        ids = ind[starts]
        if np.unique(ids).size == ids.size and np.all(runs == runs[0]):
            names = []
            for i in ids:
                md = ts.individual(int(i)).metadata
                name = md.get("name") if isinstance(md, dict) else None
                names.append(str(name) if name else f"tsk_{int(i)}")
            return names, int(runs[0])
    return [f"n{int(u)}" for u in nodes], 1


def _ts_chrom(ts, path: Path | None) -> str:
    md = ts.metadata
    if isinstance(md, dict):
        for key in ("chrom", "chromosome", "contig"):
            if isinstance(md.get(key), str) and md[key]:
                return md[key]
    if path is None:
        return "1"
    name = path.name
    for ext in (".trees", ".ts", ".tsz"):
        name = name.removesuffix(ext)
    return name


def _load(path):
    """(tree sequence, source label, path or None) of a path or a ``tskit.TreeSequence``."""
    import tskit

    if isinstance(path, tskit.TreeSequence):
        return path, "<TreeSequence>", None
    p = Path(path)
    try:
        ts = tskit.load(p)
    except OSError as e:
        raise InputFormatError(f"{p}: cannot read: {e.strerror or e}") from e
    except Exception as e:  # tskit raises FileFormatError, KeyError, ValueError... by version
        raise InputFormatError(f"{p}: not a readable tskit tree sequence: {e}") from e
    return ts, str(p), p


@dataclasses.dataclass
class _Part:
    """What one decoded range of sites gives (``_decode``); parts add up in site order."""

    positions: list = dataclasses.field(default_factory=list)  # kept sites' positions, per chunk
    rows: list = dataclasses.field(default_factory=list)  # kept rows per chunk (see ``packed``)
    missing: np.ndarray | None = None  # missing calls per haplotype in kept sites
    input_sites: int = 0
    multiallelic: int = 0
    uncalled: int = 0

    def kept(self) -> int:
        return sum(len(p) for p in self.positions)

    def extend(self, other: _Part) -> None:
        """Append the part that follows this one along the genome."""
        self.positions += other.positions
        self.rows += other.rows
        self.missing += other.missing
        self.input_sites += other.input_sites
        self.multiallelic += other.multiallelic
        self.uncalled += other.uncalled


def _decode(
    ts,
    left: float = 0.0,
    right: float | None = None,
    *,
    packed: bool,
    chunk_sites: int = CHUNK_SITES,
) -> _Part:
    """The sites of ``ts`` in ``[left, right)``, decoded by tskit in chunks of ``chunk_sites``.

    Each chunk's genotypes (from one ``TreeSequence.variants(copy=False, left=, right=)``, isolated
    samples -1) are copied into one int8 buffer (allele indices are clipped to 2 first when a site can
    have more than 127 alleles: any index above 1 only marks the site multi-allelic); the site
    masks, counts and kept rows are computed while the chunk is in cache. ``packed``: kept rows as
    ``np.packbits`` of the derived allele (missing calls 0), else as uint8 with ``MISSING``.
    """
    n_hap = ts.num_samples
    pos_all = ts.sites_position
    right = ts.sequence_length if right is None else right
    start, stop = (int(i) for i in np.searchsorted(pos_all, [left, right]))
    part = _Part(missing=np.zeros(n_hap, dtype=np.int64), input_sites=stop - start)
    # a site's allele count is at most its mutation count + 1 (the ancestral state)
    site = ts.mutations_site
    per_site = np.bincount(site[(site >= start) & (site < stop)])
    clip = per_site.size > 0 and per_site.max() + 1 > 127
    buf = np.empty((min(chunk_sites, stop - start), n_hap), dtype=np.int8)
    # one iterator for all chunks: each new one seeks its first tree (0.3-0.5 s on 50 Mb)
    variants = ts.variants(copy=False, left=left, right=right) if stop > start else iter(())
    for a in range(start, stop, chunk_sites):
        b = min(a + chunk_sites, stop)
        k = -1
        for k, var in enumerate(itertools.islice(variants, b - a)):
            buf[k] = np.minimum(var.genotypes, 2) if clip else var.genotypes
        if k != b - a - 1:  # tskit's sites in [left, right) are this chunk's
            raise AssertionError(f"tskit decoded {k + 1} sites for sites {a}:{b}")
        g = buf[: b - a]
        mx = g.max(axis=1)  # > 1: multi-allelic; < 0: no call; 1: a derived call
        keep = (mx == 1) & (g == 0).any(axis=1)
        part.multiallelic += int((mx > 1).sum())
        part.uncalled += int((mx < 0).sum())
        rows = g[keep]
        miss = rows < 0
        if packed:
            part.rows.append(np.packbits(rows == 1, axis=1))
        else:
            part.rows.append(rows.view(np.uint8))
        if miss.any():
            part.missing += miss.sum(axis=0)
            if not packed:
                part.rows[-1][miss] = MISSING
        part.positions.append(pos_all[a:b][keep])
    return part


def _stats(part: _Part) -> dict:
    kept = part.kept()
    return dict(
        input_sites=part.input_sites,
        kept=kept,
        duplicate_records=0,  # tskit site positions are unique
        multiallelic=part.multiallelic,
        non_snp=0,
        uncalled=part.uncalled,
        monomorphic=part.input_sites - part.multiallelic - part.uncalled - kept,
        missing_calls=int(part.missing.sum()),
    )


def _concat(parts: list, width: int, dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, width), dtype=dtype)


def read_trees(
    path, *, chrom: str | None = None, chunk_sites: int = CHUNK_SITES
) -> list[HaplotypeData]:
    """Read a tskit tree sequence (path or ``tskit.TreeSequence``) into one ``HaplotypeData``.

    Sites where a sample carries a second derived state (allele index >= 2) are dropped and counted
    as multi-allelic; 0 is the site's ancestral state, 1 its (first) derived state. Positions are
    tskit coordinates (0-based, float), length is ``sequence_length``. The chromosome name is
    ``chrom``, else top-level metadata 'chrom'/'chromosome'/'contig', else the file stem. Isolated
    samples (missing data) are MISSING. Genotypes are decoded in chunks of ``chunk_sites``
    (``_decode``): peak memory is about 2 bytes per kept genotype (the chunks, then their
    concatenation), not tskit's ``genotype_matrix`` (4 bytes per genotype of every site).
    """
    ts, src, p = _load(path)
    names, ploidy = _ts_samples(ts)
    part = _decode(ts, packed=False, chunk_sites=chunk_sites)
    hap = _concat(part.rows, ts.num_samples, np.uint8)
    part.rows.clear()
    hd = HaplotypeData(
        chrom=chrom or _ts_chrom(ts, p),
        positions=_concat(part.positions, 0, np.float64).reshape(-1),
        haplotypes=hap,
        sample_names=names,
        ploidy=ploidy,
        length=float(ts.sequence_length),
        source=src,
        stats=_stats(part),
    )
    _log_stats(src, hd)
    return [hd]


def _decode_share(ts, lo: float, hi: float, chunk_sites: int) -> _Part:
    """``_decode`` of the genome's share ``[lo, hi)`` (fractions of ``sequence_length``)."""
    length = ts.sequence_length
    return _decode(ts, lo * length, hi * length, packed=True, chunk_sites=chunk_sites)


_WORKER_TS = None  # a forked worker's tree sequence (``read_trees_packed``)


def _set_worker_ts(ts) -> None:
    global _WORKER_TS
    _WORKER_TS = ts


def _decode_worker_share(lo: float, hi: float, chunk_sites: int) -> _Part:
    return _decode_share(_WORKER_TS, lo, hi, chunk_sites)


def read_trees_packed(
    path, *, chrom: str | None = None, chunk_sites: int = CHUNK_SITES, processes: int = 1
):
    """Read a tskit tree sequence into a ``scan_inputs.PackedChromosome``: what ``read_trees`` reads,
    with the kept sites' 0/1 genotypes bit-packed as they are decoded (missing calls as 0, as
    ``scan_inputs.save_chromosome`` stores them) and the missing calls per haplotype in kept sites
    as ``missing_per_haplotype`` (which ``check_usable`` reads instead of the matrix).

    ``processes`` > 1: the genome is split into that many equal ranges, decoded side by side by
    this process and forked workers (``concurrent.futures.ProcessPoolExecutor`` with the 'fork'
    start method: they share the loaded tree sequence instead of loading it again, and a workflow
    script is not re-run as 'spawn' would); one process where 'fork' is not available. The result
    does not depend on ``processes``.
    """
    import multiprocessing

    from ..scan_inputs import PackedChromosome, PackedHaplotypes

    ts, src, p = _load(path)
    names, ploidy = _ts_samples(ts)
    if processes > 1 and "fork" in multiprocessing.get_all_start_methods():
        import concurrent.futures

        cuts = np.linspace(0.0, 1.0, processes + 1).tolist()
        with concurrent.futures.ProcessPoolExecutor(
            processes - 1,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_set_worker_ts,
            initargs=(ts,),  # inherited by the fork, not pickled
        ) as pool:
            workers = [
                pool.submit(_decode_worker_share, lo, hi, chunk_sites)
                for lo, hi in zip(cuts[1:-1], cuts[2:], strict=True)
            ]
            part = _decode_share(ts, cuts[0], cuts[1], chunk_sites)
            for w in workers:
                part.extend(w.result())
    else:
        part = _decode(ts, packed=True, chunk_sites=chunk_sites)
    n_hap = ts.num_samples
    packed = _concat(part.rows, (n_hap + 7) // 8, np.uint8)
    part.rows.clear()
    hd = PackedChromosome(
        chrom=chrom or _ts_chrom(ts, p),
        positions=_concat(part.positions, 0, np.float64).reshape(-1),
        haplotypes=PackedHaplotypes(packed, n_hap),
        length=float(ts.sequence_length),
        source=src,
        sample_names=names,
        ploidy=ploidy,
        stats=_stats(part),
        missing_per_haplotype=part.missing,
    )
    _log_stats(src, hd)
    return hd
