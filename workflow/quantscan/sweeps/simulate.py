"""msprime simulations of neutral and hard-sweep regions under confounding demography.

A scenario is a dict from the config (see ``config/schema.yaml``): optional ``bottleneck`` (times in units of
4N generations and a relative size, as in ms ``-eN``), ``hotspot`` (a recombination hotspot as a ``RateMap``),
``island`` (a structured population; neutral only, because msprime cannot simulate a sweep with several
populations) and overrides of the global parameters. Replicates are stored compactly per batch: one npz with
all variable sites of all replicates, genotypes bit-packed along the haplotype axis.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import msprime
import numpy as np
from msprime import _msprime

from ..atomic import atomic_path
from ..errors import ConfigError, InputFormatError
from ..seeds import derive_seed
from . import CLASSES

log = logging.getLogger(__name__)


# parameters a scenario may override
GLOBAL_KEYS = (
    "population_size",
    "sequence_length",
    "haplotypes",
    "mutation_rate",
    "recombination_rate",
    "selection_coefficient",
    "sweep_end_time",
)


@dataclasses.dataclass(frozen=True)
class SimParams:
    """Parameters of one scenario, globals merged with the scenario's overrides."""

    population_size: float = 10_000
    sequence_length: float = 100_000
    haplotypes: int = 128
    mutation_rate: float = 5e-7
    recombination_rate: float = 5e-7
    selection_coefficient: float = 0.05
    sweep_end_time: float = 0.0
    bottleneck: dict | None = None
    hotspot: dict | None = None
    island: dict | None = None

    @classmethod
    def from_config(cls, sweeps_cfg: dict, scenario: str) -> SimParams:
        scenarios = sweeps_cfg["scenarios"]
        if scenario not in scenarios:
            raise ConfigError(f"unknown scenario {scenario!r}; defined: {', '.join(scenarios)}")
        spec = scenarios[scenario] or {}
        values = {k: sweeps_cfg[k] for k in GLOBAL_KEYS if k in sweeps_cfg}
        values.update({k: v for k, v in spec.items() if k in GLOBAL_KEYS})
        for key in ("bottleneck", "hotspot", "island"):
            values[key] = spec.get(key)
        params = cls(**values)
        if params.haplotypes % 2:
            raise ConfigError(
                f"sweeps.haplotypes must be even (diploid samples), got {params.haplotypes}"
            )
        return params

    @property
    def neutral_only(self) -> bool:
        return self.island is not None

    def classes(self) -> tuple[str, ...]:
        return ("neutral",) if self.neutral_only else CLASSES


@dataclasses.dataclass
class Replicate:
    """One simulated region: ``haplotypes`` is (n_sites, n_haplotypes) uint8, derived = 1."""

    positions: np.ndarray
    haplotypes: np.ndarray
    sweep_position: float  # NaN for neutral replicates


def _demography(p: SimParams) -> msprime.Demography:
    n = p.population_size
    if p.island is not None:
        isl = p.island
        dem = msprime.Demography()
        # the continent also exists before the split (msprime makes split ancestors inactive by default)
        dem.add_population(name="continent", initial_size=n, initially_active=True)
        dem.add_population(name="island", initial_size=n * isl["size"])
        # ms -em uses 4N m; backwards in time island lineages migrate to the continent
        dem.set_migration_rate(source="island", dest="continent", rate=isl["migration"] / (4 * n))
        dem.add_population_split(
            time=isl["split_time"] * 4 * n, derived=["island"], ancestral="continent"
        )
        return dem
    dem = msprime.Demography.isolated_model([n])
    if p.bottleneck is not None:
        b = p.bottleneck
        dem.add_population_parameters_change(time=b["start"] * 4 * n, initial_size=n * b["size"])
        dem.add_population_parameters_change(time=b["end"] * 4 * n, initial_size=n)
    return dem


def _recombination_map(p: SimParams) -> msprime.RateMap | float:
    if p.hotspot is None:
        return p.recombination_rate
    h, r, length = p.hotspot, p.recombination_rate, p.sequence_length
    if not 0 < h["left"] < h["right"] < length:
        raise ConfigError(f"hotspot [{h['left']}, {h['right']}] must lie inside (0, {length})")
    return msprime.RateMap(
        position=[0, h["left"], h["right"], length], rate=[r, h["intensity"] * r, r]
    )


def simulate_tree_sequence(
    p: SimParams, cls: str, seed: int, scenario: str = "?", sweep_position: float | None = None
):
    """One region as a tree sequence with binary mutations; a sweep replicate has a hard sweep at
    ``sweep_position`` (default: the centre) ending ``sweep_end_time`` generations ago."""
    if cls not in p.classes():
        raise ConfigError(f"scenario {scenario!r} cannot simulate class {cls!r}")
    n, length = p.population_size, p.sequence_length
    model = None
    if cls == "sweep":
        sweep = msprime.SweepGenicSelection(
            position=length / 2 if sweep_position is None else float(sweep_position),
            start_frequency=1 / (2 * n),
            end_frequency=1 - 1 / (2 * n),
            s=p.selection_coefficient,
            dt=1e-6,
        )
        model = [sweep, msprime.StandardCoalescent()]
        if p.sweep_end_time > 0:
            model.insert(0, msprime.StandardCoalescent(duration=p.sweep_end_time))
    samples = {"island": p.haplotypes // 2} if p.island is not None else p.haplotypes // 2
    try:
        ts = msprime.sim_ancestry(
            samples=samples,
            demography=_demography(p),
            sequence_length=length,
            recombination_rate=_recombination_map(p),
            model=model,
            random_seed=seed,
        )
    except _msprime.LibraryError as err:
        if "during a sweep" in str(err):
            raise ConfigError(
                f"scenario {scenario!r}: a demographic event falls inside the sweep (seed {seed}); "
                "raise selection_coefficient or set sweep_end_time past the bottleneck's end"
            ) from err
        raise
    # binary infinite-sites mutations: no tri-allelic sites, no stacked positions
    return msprime.sim_mutations(
        ts,
        rate=p.mutation_rate,
        model=msprime.BinaryMutationModel(),
        discrete_genome=False,
        random_seed=seed,
    )


def simulate_replicate(p: SimParams, cls: str, seed: int, scenario: str = "?") -> Replicate:
    """Simulate one region (a sweep replicate has its sweep at the centre) as a ``Replicate``."""
    ts = simulate_tree_sequence(p, cls, seed, scenario)
    return Replicate(
        positions=ts.tables.sites.position.copy(),
        haplotypes=ts.genotype_matrix().astype(np.uint8),
        sweep_position=p.sequence_length / 2 if cls == "sweep" else float("nan"),
    )


def simulate_batch(
    p: SimParams, scenario: str, cls: str, batch: int, size: int, master_seed: int
) -> list[Replicate]:
    """``size`` replicates; replicate i of a batch uses a seed from (master, scenario, class, batch, i)."""
    reps = []
    start = time.perf_counter()
    for i in range(size):
        seed = derive_seed(master_seed, "simulate", scenario, cls, batch, i)
        reps.append(simulate_replicate(p, cls, seed, scenario))
        if (i + 1) % max(1, size // 5) == 0:
            log.info(
                "%s/%s batch %d: %d/%d replicates (%.1f s)",
                scenario,
                cls,
                batch,
                i + 1,
                size,
                time.perf_counter() - start,
            )
    return reps


def save_replicates(
    path: str | Path, reps: list[Replicate], *, sequence_length: float, meta: dict
) -> None:
    """All replicates of a batch in one npz: concatenated sites, genotypes packed along haplotypes."""
    n_haps = {r.haplotypes.shape[1] for r in reps if r.haplotypes.size} or {0}
    if len(n_haps) != 1:
        raise ValueError("replicates of one batch must have the same number of haplotypes")
    (n,) = n_haps
    offsets = np.cumsum([0] + [len(r.positions) for r in reps]).astype(np.int64)
    geno = np.concatenate([r.haplotypes for r in reps]) if reps else np.zeros((0, n), np.uint8)
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp,
            positions=np.concatenate([r.positions for r in reps]) if reps else np.zeros(0),
            genotypes=np.packbits(geno, axis=1),
            offsets=offsets,
            n_haplotypes=np.int64(n),
            sweep_position=np.array([r.sweep_position for r in reps], dtype=np.float64),
            sequence_length=np.float64(sequence_length),
            meta=np.array(repr(sorted(meta.items()))),
        )


def load_replicates(path: str | Path) -> tuple[list[Replicate], float]:
    """Inverse of ``save_replicates``; a corrupted or foreign file raises ``InputFormatError``."""
    keys = (
        "positions",
        "genotypes",
        "offsets",
        "n_haplotypes",
        "sweep_position",
        "sequence_length",
    )
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise InputFormatError(
                    f"{path}: not a quantscan simulation shard (missing {missing})"
                )
            data = {k: z[k] for k in keys}
    except InputFormatError:
        raise
    except Exception as err:  # zipfile.BadZipFile, zlib.error, ValueError, EOFError ...
        raise InputFormatError(f"{path}: unreadable simulation shard ({err})") from err
    offsets, n = data["offsets"], int(data["n_haplotypes"])
    total = len(data["positions"])
    if offsets[0] != 0 or offsets[-1] != total or np.any(np.diff(offsets) < 0):
        raise InputFormatError(f"{path}: field 'offsets' does not match {total} sites")
    if data["genotypes"].shape != (total, (n + 7) // 8):
        raise InputFormatError(f"{path}: field 'genotypes' has shape {data['genotypes'].shape}")
    if len(data["sweep_position"]) != len(offsets) - 1:
        raise InputFormatError(f"{path}: field 'sweep_position' does not match the replicate count")
    geno = np.unpackbits(data["genotypes"], axis=1, count=n)
    reps = [
        Replicate(
            positions=data["positions"][a:b],
            haplotypes=geno[a:b],
            sweep_position=float(data["sweep_position"][i]),
        )
        for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:], strict=True))
    ]
    return reps, float(data["sequence_length"])
