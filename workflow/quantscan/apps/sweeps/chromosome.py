"""A long simulated test chromosome with known sweeps: independent msprime segments joined end to end.

Each segment is simulated like a training replicate (``simulate.SimParams``: same demography,
mutation model and sweep model; a segment simulated with ``sweep_fraction=0.5`` has exactly the
genotypes ``simulate.simulate_replicate`` gives for the same seed, which the tests check). Segments
listed in ``sweep_segments`` carry one hard sweep at ``sweep_fraction`` of their length; segments
in ``hotspot_segments`` get a recombination hotspot (a ``RateMap``); a segment may have both (a
sweep inside a hotspot). The segments' tree sequences are concatenated with tskit, so the chromosome
is a real tree sequence (no linkage across segment boundaries, as if separated by free
recombination) and can be written as ``.trees`` or as VCF. The truth table lists every segment with
its class, sweep position and hotspot in chromosome coordinates (0-based, as tskit).

Spec (``ChromosomeSpec.from_config``)::

    name: chrSim                 # chromosome name (tree-sequence metadata, VCF CHROM)
    n_segments: 50
    segment_length: 100000       # bp
    sweep_segments: [4, 12, 20, 31, 40, 46]
    hotspot_segments: [25]
    hotspot: {left: 0.475, right: 0.525, intensity: 20}   # fractions of a segment; rate x intensity
    sweep_fraction: 0.5          # where in its segment a sweep sits
    scenario: null               # a sweeps scenario (demography, overrides); null: the globals
    haplotypes: null             # override apps.sweeps.data.haplotypes
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ...atomic import atomic_path
from ...errors import ConfigError, InputFormatError
from ...seeds import derive_seed
from ...tables import read_tsv
from .simulate import GLOBAL_KEYS, SimParams, simulate_tree_sequence

log = logging.getLogger(__name__)

TRUTH_COLUMNS = (
    "chrom",
    "segment",
    "start",
    "end",
    "class",
    "sweep_position",
    "hotspot_start",
    "hotspot_end",
    "hotspot_intensity",
    "seed",
    "n_sites",
)


@dataclasses.dataclass(frozen=True)
class ChromosomeSpec:
    name: str = "chrSim"
    n_segments: int = 50
    segment_length: float = 100_000
    sweep_segments: tuple[int, ...] = (4, 12, 20, 31, 40, 46)
    hotspot_segments: tuple[int, ...] = (25,)
    hotspot: dict = dataclasses.field(
        default_factory=lambda: {"left": 0.475, "right": 0.525, "intensity": 20.0}
    )
    sweep_fraction: float = 0.5
    scenario: str | None = None
    haplotypes: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "sweep_segments", tuple(int(k) for k in self.sweep_segments))
        object.__setattr__(self, "hotspot_segments", tuple(int(k) for k in self.hotspot_segments))
        where = f"chromosome {self.name!r}"
        if self.n_segments < 1 or self.segment_length <= 0:
            raise ConfigError(f"{where}: n_segments and segment_length must be positive")
        for field in ("sweep_segments", "hotspot_segments"):
            bad = [k for k in getattr(self, field) if not 0 <= k < self.n_segments]
            if bad:
                raise ConfigError(f"{where}: {field} {bad} outside 0..{self.n_segments - 1}")
        if not 0 < self.sweep_fraction < 1:
            raise ConfigError(f"{where}: sweep_fraction must be in (0, 1)")
        h = self.hotspot
        if self.hotspot_segments:
            missing = {"left", "right", "intensity"} - set(h)
            if missing:
                raise ConfigError(f"{where}: hotspot lacks {sorted(missing)}")
            if not 0 < h["left"] < h["right"] < 1 or h["intensity"] <= 0:
                raise ConfigError(
                    f"{where}: hotspot needs 0 < left < right < 1 (fractions of a segment) "
                    f"and intensity > 0, got {h}"
                )

    @property
    def length(self) -> float:
        return self.n_segments * self.segment_length

    @classmethod
    def from_config(cls, chrom_cfg: dict) -> ChromosomeSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(chrom_cfg) - known)
        if unknown:
            raise ConfigError(f"unknown chromosome key(s) {unknown}; known: {sorted(known)}")
        return cls(**chrom_cfg)

    def params(self, sweeps_cfg: dict) -> SimParams:
        """Simulation parameters of one (plain) segment: scenario or globals, segment length."""
        if self.scenario is not None:
            p = SimParams.from_config(sweeps_cfg, self.scenario)
        else:
            p = SimParams(**{k: sweeps_cfg[k] for k in GLOBAL_KEYS if k in sweeps_cfg})
        p = dataclasses.replace(p, sequence_length=float(self.segment_length))
        if self.haplotypes is not None:
            p = dataclasses.replace(p, haplotypes=int(self.haplotypes))
        if p.neutral_only:
            raise ConfigError(f"chromosome {self.name!r}: neutral-only scenarios have no sweeps")
        return p


def simulate_segment(p: SimParams, cls: str, seed: int, *, sweep_position: float | None = None):
    """One segment as a tree sequence, simulated exactly as ``simulate.simulate_replicate`` does.

    ``sweep_position`` (bp) defaults to the segment centre, the replicates' sweep site.
    """
    if cls not in ("neutral", "sweep"):
        raise ConfigError(f"segment class must be neutral or sweep, got {cls!r}")
    return simulate_tree_sequence(p, cls, seed, sweep_position=sweep_position)


def simulate_chromosome(spec: ChromosomeSpec, params: SimParams, master_seed: int):
    """(tree sequence of the whole chromosome, truth table). Seeds: (master, name, segment)."""
    import tskit

    if not hasattr(tskit.TreeSequence, "concatenate"):
        raise ConfigError(f"tskit {tskit.__version__} has no TreeSequence.concatenate; upgrade it")
    L = float(spec.segment_length)
    sweeps, hotspots = set(spec.sweep_segments), set(spec.hotspot_segments)
    segments, rows = [], []
    t0 = time.perf_counter()
    for k in range(spec.n_segments):
        cls = "sweep" if k in sweeps else "neutral"
        p = params
        h = spec.hotspot
        if k in hotspots:
            p = dataclasses.replace(
                params,
                hotspot={
                    "left": h["left"] * L,
                    "right": h["right"] * L,
                    "intensity": h["intensity"],
                },
            )
        seed = derive_seed(master_seed, "chromosome", spec.name, k)
        ts = simulate_segment(p, cls, seed, sweep_position=spec.sweep_fraction * L)
        segments.append(ts)
        off = k * L
        rows.append(
            {
                "chrom": spec.name,
                "segment": k,
                "start": off,
                "end": off + L,
                "class": cls,
                "sweep_position": off + spec.sweep_fraction * L if cls == "sweep" else np.nan,
                "hotspot_start": off + h["left"] * L if k in hotspots else np.nan,
                "hotspot_end": off + h["right"] * L if k in hotspots else np.nan,
                "hotspot_intensity": float(h["intensity"]) if k in hotspots else np.nan,
                "seed": seed,
                "n_sites": ts.num_sites,
            }
        )
        if (k + 1) % max(1, spec.n_segments // 5) == 0:
            log.info(
                "%s: %d/%d segments (%.1f s)",
                spec.name,
                k + 1,
                spec.n_segments,
                time.perf_counter() - t0,
            )
    ts = _concatenate(segments)
    tables = ts.dump_tables()
    tables.metadata_schema = tskit.MetadataSchema.permissive_json()
    tables.metadata = {"chrom": spec.name}
    return tables.tree_sequence(), pd.DataFrame(rows, columns=list(TRUTH_COLUMNS))


def _concatenate(segments: list):
    """Tree sequences joined end to end, in pairs: ``union`` copies the growing left operand, so
    joining one at a time is quadratic (40 x 50 kb segments: 18 s) and pairwise O(n log n) (5 s);
    concatenation is associative, so the result is the same tree sequence."""
    parts = list(segments)
    while len(parts) > 1:
        parts = [
            parts[i].concatenate(parts[i + 1]) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    return parts[0]


# --------------------------------------------------------------------------------------------------
# writers and readers (atomic)


def write_trees(ts, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        ts.dump(tmp)


def write_vcf(ts, path: str | os.PathLike, chrom: str) -> None:
    """Phased diploid VCF; POS = floor(tskit position) + 1 (1-based; duplicates kept)."""
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        ts.write_vcf(
            fh,
            contig_id=chrom,
            position_transform=lambda x: np.floor(x).astype(np.int64) + 1,
        )


def write_truth(truth: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        truth.to_csv(tmp, sep="\t", index=False, na_rep="NA", float_format="%.10g")


def write_truth_bed(truth: pd.DataFrame, path: str | os.PathLike) -> None:
    """BED of true sweeps (1 bp, 0-based) and hotspots, named sweep_s<segment> / hotspot_s<k>."""
    rows = []
    for r in truth.to_dict("records"):
        if r["class"] == "sweep":
            a = int(np.floor(r["sweep_position"]))
            rows.append((a, f"{r['chrom']}\t{a}\t{a + 1}\tsweep_s{r['segment']}"))
        if np.isfinite(r["hotspot_start"]):
            a, b = int(np.floor(r["hotspot_start"])), int(np.ceil(r["hotspot_end"]))
            rows.append((a, f"{r['chrom']}\t{a}\t{b}\thotspot_s{r['segment']}"))
    rows.sort(key=lambda t: t[0])
    with atomic_path(path) as tmp:
        Path(tmp).write_text("".join(line + "\n" for _, line in rows))


def read_truth(path: str | os.PathLike) -> pd.DataFrame:
    """A truth table written by ``write_truth``; a wrong file raises ``InputFormatError``."""
    truth = read_tsv(path, TRUTH_COLUMNS, "truth table", na_values=["NA"], keep_default_na=False)
    bad = sorted(set(truth["class"]) - {"neutral", "sweep"})
    if bad:
        raise InputFormatError(f"{path}: column 'class' has unknown value(s) {bad}")
    if truth.loc[truth["class"] == "sweep", "sweep_position"].isna().any():
        raise InputFormatError(f"{path}: a sweep segment has no 'sweep_position'")
    truth["chrom"] = truth["chrom"].astype(str)
    return truth


__all__ = [
    "TRUTH_COLUMNS",
    "ChromosomeSpec",
    "read_truth",
    "simulate_chromosome",
    "simulate_segment",
    "write_trees",
    "write_truth",
    "write_truth_bed",
    "write_vcf",
]
