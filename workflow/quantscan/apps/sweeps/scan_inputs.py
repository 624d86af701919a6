"""The genome scan's inputs (workflow/rules/sweeps/scan.smk): from the config entry to the packed
chromosome file that the region jobs read.

``ScanInput`` is one input of the scan plan (``scan_plan``): a user file of
``apps.sweeps.scan.inputs`` or the simulated chromosome(s). ``user_input`` resolves a user input
when the workflow is parsed: its format (as given, else detected from the file's content), its
chromosome names (listed in the config, else read cheaply from the VCF header, the ms file or the
tree sequence's metadata: ``input_chroms``) and its haplotype count (``input_haplotypes``).

Chromosomes are converted once per (input, chromosome) to a compact npz (``read_chromosome``,
``save_chromosome``: positions, bit-packed 0/1 haplotypes with missing calls as 0, which is what
the scan's encoder does with them anyway), so the region jobs of a chromosome do not each parse a
VCF; ``load_chromosome`` reads one back, whole or lazily (``PackedChromosome``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from ...atomic import atomic_path
from ...errors import ConfigError, InputFormatError

INPUT_FORMATS = ("auto", "vcf", "ms", "trees")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# --------------------------------------------------------------------------------------------------
# inputs of the plan: resolved when the workflow is parsed


@dataclasses.dataclass
class ScanInput:
    """One input of the scan: a user file or the simulated chromosome(s)."""

    name: str
    format: str  # vcf, ms, trees (simulated chromosomes are trees)
    path: str | None  # None for the simulated input (one .trees file per chromosome)
    chroms: list[str]
    scenario: str  # whose models scan it
    null_scenario: str  # whose neutral test replicates give the p-value null
    options: dict = dataclasses.field(default_factory=dict)  # reader options
    truth: bool = False  # simulated: truth tables exist
    haplotypes: int = 0  # the input's haplotype count (read when the workflow is parsed)
    sample_size: dict = dataclasses.field(default_factory=dict)  # sample_size.SampleSize.as_dict

    @property
    def base(self) -> int:
        """Coordinate base of the input's positions (VCF/BCF 1, ms and tree sequences 0)."""
        return 1 if self.format in ("vcf", "bcf") else 0


def check_name(key: str, name: str) -> None:
    if not _SAFE_NAME.match(str(name)):
        raise ConfigError(
            f"config key {key}: {name!r} cannot be used in file names "
            "(letters, digits, '.', '_' and '-'; starting with a letter or digit)"
        )


def input_format(item: dict, key: str, *, read_headers: bool = True) -> str:
    """The format of an ``apps.sweeps.scan.inputs`` item: as given, else detected from the file's content."""
    from .io import detect_format

    fmt = item.get("format") or "auto"
    if fmt != "auto":
        return fmt
    if not read_headers:
        raise ConfigError(f"config key {key}.format: give the format")
    if not Path(item["path"]).exists():
        raise ConfigError(f"config key {key}.path: {item['path']} does not exist")
    return detect_format(item["path"])


def input_haplotypes(item: dict, key: str, fmt: str, *, read_headers: bool = True) -> int:
    """The haplotype count of an ``apps.sweeps.scan.inputs`` item: as given, else read from the file's start."""
    if item.get("haplotypes") is not None:
        return int(item["haplotypes"])
    if not read_headers:
        raise ConfigError(f"config key {key}.haplotypes: give the haplotype count")
    from .io import count_haplotypes

    return int(
        count_haplotypes(item["path"], fmt, samples=item.get("samples"), length=item.get("length"))
    )


def user_input(item: dict, key: str, scenario: str, *, read_headers: bool = True) -> ScanInput:
    """A user input of ``apps.sweeps.scan.inputs``: format and chromosome names resolved (see ``input_chroms``)."""
    path = item["path"]
    fmt = input_format(item, key, read_headers=read_headers)
    if fmt == "ms" and not item.get("length"):
        raise ConfigError(
            f"config key {key}.length: ms input needs the length that scales positions"
        )
    if fmt not in ("vcf", "bcf"):
        for opt in ("samples", "region"):
            if item.get(opt):
                raise ConfigError(f"config key {key}.{opt}: only VCF/BCF inputs take {opt!r}")
    chroms = list(item.get("chroms") or [])
    if item.get("region"):
        from .io.regions import _parse_region

        reg_chrom = _parse_region(item["region"])[0]
        if chroms and chroms != [reg_chrom]:
            raise ConfigError(
                f"config key {key}.chroms: region {item['region']!r} is on {reg_chrom}"
            )
        chroms = [reg_chrom]
    if not chroms:
        if not read_headers:
            raise ConfigError(f"config key {key}.chroms: give the chromosome names")
        chroms = input_chroms(path, fmt)
    for c in chroms:
        check_name(f"{key}.chroms", c)
    if len(set(chroms)) != len(chroms):
        raise ConfigError(f"config key {key}.chroms: names must be distinct")
    options = {
        "length": item.get("length"),
        "samples": item.get("samples"),
        "region": item.get("region"),
        "phased": item.get("phased") or "auto",
    }
    inp = ScanInput(item["name"], fmt, str(path), chroms, scenario, scenario, options)
    inp.haplotypes = input_haplotypes(item, key, fmt, read_headers=read_headers)
    return inp


def input_chroms(path: str | os.PathLike, fmt: str) -> list[str]:
    """Chromosome names of an input file, read cheaply when the workflow is parsed.

    VCF/BCF: the contigs that have records (``io.record_contigs``: the tabix/CSI index when there
    is one, else the CHROM column of one streaming pass; ``##contig`` header lines are not
    trusted, as reference-wide headers list every contig of the assembly); no record at all is an
    ``InputFormatError``. ms: ``rep1..repN`` from the number of ``//`` lines; tree sequence: its
    metadata name or file stem (``io.read_trees``).
    """
    from . import io
    from .io.formats import _open_binary
    from .io.trees import _ts_chrom

    path = Path(path)
    if fmt in ("vcf", "bcf"):
        return io.record_contigs(path, fmt)
    if fmt == "ms":
        n = 0
        with _open_binary(path) as fh:
            for raw in fh:
                n += raw.startswith(b"//")
        if not n:
            raise InputFormatError(f"{path}: not ms output: no '//' replicate line")
        return [f"rep{k + 1}" for k in range(n)]
    if fmt == "trees":
        import tskit

        try:
            ts = tskit.load(path)
        except Exception as err:  # tskit's exception types vary by version
            raise InputFormatError(f"{path}: not a readable tskit tree sequence: {err}") from err
        return [_ts_chrom(ts, path)]
    raise ConfigError(f"{path}: unknown input format {fmt!r}")


# --------------------------------------------------------------------------------------------------
# inputs: read once, store compactly


def read_chromosome(inp: dict, chrom: str, *, packed: bool = False, processes: int = 1):
    """``HaplotypeData`` of one chromosome of an input (``ScanInput`` fields as a dict).

    A chromosome (or region) with no usable SNP, or whose genotype calls are all missing, is an
    ``InputFormatError`` naming the file, the range and the likely cause (``io.check_usable``
    without the window check, which needs the window). A 'chr' prefix that differs between the
    config and a VCF is mapped (``hd.notes`` says so).

    ``packed``: a tree sequence is read straight into a ``PackedChromosome`` that carries its
    missing calls per haplotype (``io.trees.read_trees_packed``, decoded in ``processes``
    processes), which ``io.check_usable`` and ``save_chromosome`` take as they take a
    ``HaplotypeData``; the other formats still give a ``HaplotypeData``.
    """
    from . import io
    from .io.checks import _check_snps

    fmt, path, opt = inp["format"], inp["path"], inp.get("options", {})
    if fmt in ("vcf", "bcf"):
        region = opt.get("region") or chrom
        (hd,) = io.read_vcf(
            path, region=region, samples=opt.get("samples"), phased=opt.get("phased", "auto")
        )
    elif fmt == "ms":
        reps = io.iter_ms(path, length=float(opt["length"]))
        try:
            for hd in reps:
                if hd.chrom == chrom:
                    break
            else:
                raise InputFormatError(f"{path}: no replicate {chrom!r}")
        finally:
            reps.close()
    elif fmt == "trees" and packed:
        from .io.trees import read_trees_packed

        hd = read_trees_packed(path, chrom=chrom, processes=processes)
    elif fmt == "trees":
        (hd,) = io.read_trees(path, chrom=chrom)
    else:
        raise ConfigError(f"unknown input format {fmt!r}")
    _check_snps(hd, str(path))
    return hd


#: zlib level of the chromosome files: 1 packs a simulated 50 Mb chromosome at 198 haplotypes
#: (5.85 M SNPs; 146 MB packed, 47 MB positions) into 88 MB in 4.4 s, where
#: ``np.savez_compressed``'s level 6 took 13.5 s for 81 MB and no compression 0.8 s for 193 MB
#: (docs/speed.md); real data with thousands of haplotypes, mostly rare variants, compresses far
#: better, and region jobs load the file (inflate) in about 2 s either way
ZLIB_LEVEL = 1


def _pack_rows(hap: np.ndarray, rows: int = 1 << 16) -> np.ndarray:
    """``np.packbits`` of the derived calls (missing calls as 0), in blocks of rows."""
    out = np.empty((hap.shape[0], (hap.shape[1] + 7) // 8), dtype=np.uint8)
    for i in range(0, hap.shape[0], rows):
        out[i : i + rows] = np.packbits(hap[i : i + rows] == 1, axis=1)
    return out


def _savez(path, level: int, **arrays) -> None:
    """``np.savez`` with the zlib ``level`` (``zipfile``; 0: stored): what ``np.load`` reads."""
    method = zipfile.ZIP_DEFLATED if level else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method, compresslevel=level or None) as zf:
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)


def save_chromosome(
    hd, path: str | os.PathLike, *, base: int = 0, warnings: list[str] | None = None
) -> None:
    """One chromosome as npz: positions, 0/1 haplotypes bit-packed (missing calls as 0), info
    (with the reader's ``warnings``, which the scan's outputs repeat), zlib level ``ZLIB_LEVEL``.
    ``hd``: a ``HaplotypeData`` or a ``PackedChromosome`` (stored as it is packed)."""
    info = {
        "warnings": list(warnings or []),
        "chrom": hd.chrom,
        "length": hd.length,
        "source": hd.source,
        "base": int(base),
        "n_haplotypes": int(hd.n_haplotypes),
        "sample_names": list(hd.sample_names),
        "ploidy": int(hd.ploidy),
        "stats": {k: int(v) for k, v in hd.stats.items()},
    }
    if isinstance(hd.haplotypes, PackedHaplotypes):
        packed = hd.haplotypes.packed
    else:
        packed = _pack_rows(hd.haplotypes)
    with atomic_path(path) as tmp:
        _savez(
            tmp,
            ZLIB_LEVEL,
            positions=hd.positions,
            haplotypes=packed,
            info=np.array(json.dumps(info)),
        )


class PackedHaplotypes:
    """Bit-packed ``(n_sites, n_haplotypes)`` 0/1 genotypes; slicing rows unpacks only those."""

    def __init__(self, packed: np.ndarray, n_haplotypes: int):
        self.packed = packed
        self.shape = (packed.shape[0], int(n_haplotypes))
        self.dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        if not isinstance(rows, slice):
            raise TypeError("PackedHaplotypes takes row slices only")
        return np.unpackbits(self.packed[rows], axis=1, count=self.shape[1])


@dataclasses.dataclass(eq=False)
class PackedChromosome:
    """What ``scan.scan_chromosome`` reads of a ``HaplotypeData``, with packed haplotypes.

    A region job unpacks only the SNPs under its windows: memory is n_sites x n_haplotypes / 8
    bytes for the whole chromosome plus the region's SNPs unpacked. ``io.trees.read_trees_packed``
    reads a tree sequence straight into one (with ``missing_per_haplotype``, for ``io.check_usable``).
    """

    chrom: str
    positions: np.ndarray
    haplotypes: PackedHaplotypes
    length: float | None
    source: str
    sample_names: list
    ploidy: int
    stats: dict
    missing_per_haplotype: np.ndarray | None = None
    """Missing calls per haplotype before packing (``io.checks`` reads it; None: none known)."""
    region: tuple[int, int] | None = None
    notes: list = dataclasses.field(default_factory=list)
    contig_span: tuple[int, int] | None = None

    @property
    def n_sites(self) -> int:
        return self.haplotypes.shape[0]

    @property
    def n_haplotypes(self) -> int:
        return self.haplotypes.shape[1]

    @property
    def haplotype_names(self) -> list[str]:
        if self.ploidy == 1:
            return list(self.sample_names)
        return [f"{s}_h{k + 1}" for s in self.sample_names for k in range(self.ploidy)]


def load_chromosome(path: str | os.PathLike, *, lazy: bool = False):
    """(``HaplotypeData``, info) of a ``save_chromosome`` file; ``lazy``: a ``PackedChromosome``."""
    from .io import HaplotypeData

    try:
        with np.load(path, allow_pickle=False) as z:
            pos, packed, info = z["positions"], z["haplotypes"], json.loads(str(z["info"]))
    except Exception as err:  # zipfile, KeyError, json ...
        raise InputFormatError(f"{path}: unreadable chromosome file ({err})") from err
    n = int(info["n_haplotypes"])
    if packed.shape != (len(pos), (n + 7) // 8) or pos.ndim != 1:
        raise InputFormatError(f"{path}: field 'haplotypes' has shape {packed.shape}")
    if lazy:
        hd = PackedChromosome(
            chrom=info["chrom"],
            positions=pos.astype(np.float64),
            haplotypes=PackedHaplotypes(packed, n),
            length=info["length"],
            source=info["source"],
            sample_names=info["sample_names"],
            ploidy=info["ploidy"],
            stats=info["stats"],
        )
        return hd, info
    hap = np.unpackbits(packed, axis=1, count=n)
    hd = HaplotypeData(
        chrom=info["chrom"],
        positions=pos,
        haplotypes=hap,
        sample_names=info["sample_names"],
        ploidy=info["ploidy"],
        length=info["length"],
        source=info["source"],
        stats=info["stats"],
    )
    return hd, info


__all__ = [
    "INPUT_FORMATS",
    "PackedChromosome",
    "PackedHaplotypes",
    "ScanInput",
    "check_name",
    "input_chroms",
    "input_format",
    "input_haplotypes",
    "load_chromosome",
    "read_chromosome",
    "save_chromosome",
    "user_input",
]
