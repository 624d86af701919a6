"""The offline default viral data set: K classes of related sequences simulated in silico.

Each class has one or more lineages. A lineage starts from a random ancestral genome with the
class's GC content and evolves along an msprime genealogy (``sim_ancestry``, haploid) with a
nucleotide substitution model (HKY with the class's base composition, or JC69) on a discrete
genome, so sequences of one lineage are related like isolates of one virus species, and sequences
of different lineages or classes share nothing but composition. Each isolate then gets its own
length (uniform in the class's range) as a window of its evolved genome at a random offset,
optionally a few indels and a run of N.

Defaults mimic seed 004's four classes (their Table II length ranges; GC content and diversity
are illustrative choices, not measurements). Riboviria, a realm, is made of several unrelated
lineages, which makes it the hardest class, as in the paper. Note that the length ranges alone
separate some classes (the length confound of viral.md section 8): keep a length-only baseline.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import msprime
import numpy as np

from ..errors import ConfigError
from ..seeds import derive_seed
from .fasta import Record, write_fasta

_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


@dataclass(frozen=True)
class ClassSpec:
    """One simulated class.

    ``diversity`` is the expected pairwise substitutions per site between two isolates of one
    lineage (before multiple hits); ``kappa`` the HKY transition/transversion ratio.
    """

    name: str
    min_length: int
    max_length: int
    gc: float = 0.5
    diversity: float = 0.1
    n_lineages: int = 1
    kappa: float = 2.0

    def __post_init__(self):
        where = f"simulated class {self.name!r}"
        if not self.name:
            raise ConfigError("simulated class: empty name")
        if not 1 <= self.min_length <= self.max_length:
            raise ConfigError(
                f"{where}: need 1 <= min_length <= max_length, got "
                f"{self.min_length}..{self.max_length}"
            )
        if not 0.0 < self.gc < 1.0:
            raise ConfigError(f"{where}: gc must be in (0, 1), got {self.gc}")
        if self.diversity < 0:
            raise ConfigError(f"{where}: diversity must be >= 0, got {self.diversity}")
        if self.n_lineages < 1:
            raise ConfigError(f"{where}: n_lineages must be >= 1, got {self.n_lineages}")
        if self.kappa <= 0:
            raise ConfigError(f"{where}: kappa must be > 0, got {self.kappa}")

    @property
    def base_frequencies(self) -> list[float]:
        """A, C, G, T frequencies for the GC content."""
        at, gc = (1.0 - self.gc) / 2.0, self.gc / 2.0
        return [at, gc, gc, at]


DEFAULT_CLASSES = (
    ClassSpec("Alphasatellitidae", 1001, 1479, gc=0.42, diversity=0.10),
    ClassSpec("Anelloviridae", 2002, 3371, gc=0.50, diversity=0.15),
    ClassSpec("Riboviria", 1010, 3498, gc=0.45, diversity=0.20, n_lineages=8),
    ClassSpec("Tolecusatellitidae", 1012, 1436, gc=0.37, diversity=0.10),
)


@dataclass(frozen=True)
class SimulationOptions:
    """Settings shared by all classes.

    ``indel_rate``: indel events per base per isolate (not inherited along the genealogy; lengths
    are geometric with mean ``indel_mean_length``). ``n_run_probability``: chance that an isolate
    gets one run of N, of ``n_run_length`` (min, max) bases.
    """

    population_size: float = 1000.0
    recombination_rate: float = 0.0
    model: str = "hky"
    indel_rate: float = 0.0005
    indel_mean_length: float = 3.0
    n_run_probability: float = 0.02
    n_run_length: tuple[int, int] = (10, 50)

    def __post_init__(self):
        if self.model not in ("hky", "jc69"):
            raise ConfigError(f"simulation model must be 'hky' or 'jc69', got {self.model!r}")
        if self.population_size <= 0 or self.recombination_rate < 0:
            raise ConfigError("population_size must be > 0 and recombination_rate >= 0")
        if self.indel_rate < 0 or self.indel_mean_length < 1:
            raise ConfigError("indel_rate must be >= 0 and indel_mean_length >= 1")
        if not 0.0 <= self.n_run_probability <= 1.0:
            raise ConfigError(f"n_run_probability must be in [0, 1], got {self.n_run_probability}")
        lo, hi = self.n_run_length
        if not 1 <= lo <= hi:
            raise ConfigError(f"n_run_length must be (min, max) with 1 <= min <= max, got {lo, hi}")


def hky_model(kappa: float, frequencies) -> msprime.MatrixMutationModel:
    """HKY85 as an msprime matrix model, built like ``msprime.HKY``.

    ``msprime.HKY`` itself can fail for valid frequencies (e.g. GC 0.37): rounding makes the
    largest row sum exceed 1 by an ulp and its diagonal a tiny negative number. Here the diagonal
    is clipped at zero and rows are renormalised.
    """
    f = np.asarray(frequencies, dtype=float)
    f = f / f.sum()
    m = np.ones((4, 4))
    m[(0, 1, 2, 3), (2, 3, 0, 1)] = kappa  # transitions A<->G, C<->T
    m *= f
    np.fill_diagonal(m, 0.0)
    m /= m.sum(axis=1).max()
    np.fill_diagonal(m, np.clip(1.0 - m.sum(axis=1), 0.0, None))
    m /= m.sum(axis=1, keepdims=True)
    return msprime.MatrixMutationModel(
        ["A", "C", "G", "T"], root_distribution=f, transition_matrix=m
    )


def _mutation_model(spec: ClassSpec, opts: SimulationOptions):
    if opts.model == "jc69":
        return msprime.JC69()
    return hky_model(spec.kappa, spec.base_frequencies)


def _evolve_lineage(
    spec: ClassSpec, n: int, genome_length: int, opts: SimulationOptions, seed: int, lineage: int
) -> list[bytes]:
    """``n`` related genomes of ``genome_length`` from one random ancestor."""
    rng = np.random.default_rng(derive_seed(seed, "viral-simulate", spec.name, lineage, "ancestor"))
    ancestor = _BASES[rng.choice(4, size=genome_length, p=spec.base_frequencies)].tobytes()
    if n == 1:
        return [ancestor]
    ts = msprime.sim_ancestry(
        samples=n,
        ploidy=1,
        sequence_length=genome_length,
        population_size=opts.population_size,
        recombination_rate=opts.recombination_rate,
        discrete_genome=True,
        random_seed=derive_seed(seed, "viral-simulate", spec.name, lineage, "ancestry"),
    )
    # haploid pairwise coalescence time is N generations: diversity = 2 * N * mu
    rate = spec.diversity / (2.0 * opts.population_size)
    ts = msprime.sim_mutations(
        ts,
        rate=rate,
        model=_mutation_model(spec, opts),
        discrete_genome=True,
        random_seed=derive_seed(seed, "viral-simulate", spec.name, lineage, "mutations"),
    )
    # sites take their (root-distribution) ancestral state; elsewhere the ancestor's base stands
    return [a.encode("ascii") for a in ts.alignments(reference_sequence=ancestor.decode())]


def _indels(seq: np.ndarray, spec: ClassSpec, opts: SimulationOptions, rng) -> np.ndarray:
    n_events = rng.poisson(opts.indel_rate * seq.size)
    for _ in range(n_events):
        size = int(rng.geometric(1.0 / opts.indel_mean_length))
        pos = int(rng.integers(0, seq.size))
        if rng.random() < 0.5:
            seq = np.delete(seq, slice(pos, pos + size))
        else:
            ins = _BASES[rng.choice(4, size=size, p=spec.base_frequencies)]
            seq = np.insert(seq, pos, ins)
    return seq


def simulate_class(
    spec: ClassSpec, n: int, seed: int, options: SimulationOptions | None = None
) -> list[Record]:
    """``n`` isolates of one class (ids ``<class>_<00000>``, description ``lineage=<j>``)."""
    opts = options or SimulationOptions()
    if n < 0:
        raise ConfigError(f"simulated class {spec.name!r}: negative number of sequences {n}")
    # room for deletions so every isolate can still reach max_length
    genome_length = math.ceil(spec.max_length * 1.05) + 50
    lineage_of = np.arange(n) % spec.n_lineages
    rng = np.random.default_rng(derive_seed(seed, "viral-simulate", spec.name, "isolates"))
    lineage_of = rng.permutation(lineage_of)
    genomes: dict[int, list[bytes]] = {}
    for j in range(spec.n_lineages):
        members = int((lineage_of == j).sum())
        if members:
            genomes[j] = _evolve_lineage(spec, members, genome_length, opts, seed, j)
    taken = dict.fromkeys(genomes, 0)
    records = []
    for i in range(n):
        j = int(lineage_of[i])
        full = np.frombuffer(genomes[j][taken[j]], dtype=np.uint8)
        taken[j] += 1
        length = int(rng.integers(spec.min_length, spec.max_length + 1))
        seq = _indels(full, spec, opts, rng) if opts.indel_rate > 0 else full
        if seq.size < length:  # deletions ate too much (vanishingly rare): drop the indels
            seq = full
        start = int(rng.integers(0, seq.size - length + 1))
        seq = seq[start : start + length].copy()
        if rng.random() < opts.n_run_probability:
            lo, hi = opts.n_run_length
            run = min(int(rng.integers(lo, hi + 1)), length)
            at = int(rng.integers(0, length - run + 1))
            seq[at : at + run] = ord("N")
        records.append(
            Record(
                id=f"{spec.name}_{i:05d}",
                sequence=seq.tobytes().decode("ascii"),
                label=spec.name,
                description=f"lineage={j}",
                source="simulated",
            )
        )
    return records


def simulate_dataset(
    classes: Iterable[ClassSpec] = DEFAULT_CLASSES,
    n_per_class: int | Mapping[str, int] = 100,
    seed: int = 0,
    options: SimulationOptions | None = None,
) -> list[Record]:
    """Records of every class, class by class. ``n_per_class`` is one number or
    ``{class name: n}``. The same seed gives the same sequences; a class's sequences do not
    depend on which other classes are simulated."""
    classes = list(classes)
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise ConfigError(f"simulated class names must be unique, got {names}")
    if isinstance(n_per_class, Mapping):
        missing = set(names) - set(n_per_class)
        if missing:
            raise ConfigError(f"n_per_class has no count for classes {sorted(missing)}")
    records: list[Record] = []
    for spec in classes:
        n = n_per_class[spec.name] if isinstance(n_per_class, Mapping) else n_per_class
        records += simulate_class(spec, int(n), seed, options)
    return records


def classes_from_config(entries: Iterable[Mapping]) -> tuple[ClassSpec, ...]:
    """ClassSpecs from config dicts (keys as the ClassSpec fields); unknown keys are errors."""
    known = {f.name for f in fields(ClassSpec)}
    specs = []
    for i, entry in enumerate(entries):
        unknown = set(entry) - known
        if unknown:
            raise ConfigError(
                f"simulated class #{i} ({entry.get('name', '?')}): unknown keys {sorted(unknown)}; "
                f"known: {sorted(known)}"
            )
        try:
            specs.append(ClassSpec(**entry))
        except TypeError as exc:
            raise ConfigError(f"simulated class #{i}: {exc}") from None
    return tuple(specs)


def write_dataset(records: Iterable[Record], path: str | os.PathLike) -> Path:
    """Write simulated records as FASTA (``>id class=<label> lineage=<j>``), atomically."""
    return write_fasta(records, path)


def describe(classes: Iterable[ClassSpec] = DEFAULT_CLASSES) -> list[dict]:
    """The class specs as plain dicts (for logs and reports)."""
    return [asdict(c) for c in classes]


__all__ = [
    "DEFAULT_CLASSES",
    "ClassSpec",
    "SimulationOptions",
    "classes_from_config",
    "describe",
    "hky_model",
    "simulate_class",
    "simulate_dataset",
    "write_dataset",
]
