"""The offline default viral data set: K classes of related sequences simulated in silico.

A class is a family (or a realm). Its random ancestral genome has the class's GC content and
dinucleotide signature (``signature``: a first-order Markov chain with class-specific dinucleotide
odds ratios, the genome-wide composition bias that alignment-free classifiers pick up in real
families). From it ``n_lineages`` lineages (genera / species) descend along an msprime genealogy,
diverged by ``lineage_divergence`` substitutions per site; each lineage's isolates descend from
the lineage's genome along their own genealogy (``diversity``). Substitutions follow a nucleotide
model (HKY with the class's base composition, or JC69) on a discrete genome. A share of every
genome (``conserved_fraction``, in blocks inside the first ``min_length`` bases, so every lineage
has them) evolves ``conserved_rate`` times slower: the motifs a family keeps across its genera
(replication-protein motifs, the satellites' stem-loop), which make real families recognisable
beyond composition and length.

Each lineage has its own genome length (spread over the class's range), as species of a family
do. Most records are complete genomes, starting at the genome's origin (GenBank's linearisation
convention for circular genomes) with their lineage's length up to indels; a share
(``partial_fraction``) are partial sequences: windows of random length and offset. Then each
isolate may get a few indels and a run of N.

Defaults mimic Fernandes & Kung's four classes (their Table II length ranges; GC content, divergences,
signatures and shares are illustrative choices, not measurements). Riboviria, a realm, is made of
many lineages that share little more than a few slow motifs, and most of its records in a
1-3.5 kb window are partial, which makes it the hardest class, as in the paper. The length ranges
alone separate some classes (the length confound of viral.md section 8): keep the length-only
baseline in view.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import msprime
import numpy as np

from ...errors import ConfigError
from ...seeds import derive_seed
from .fasta import Record, write_fasta

_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


@dataclass(frozen=True)
class ClassSpec:
    """One simulated class.

    ``diversity`` is the expected pairwise substitutions per site between two isolates of one
    lineage, ``lineage_divergence`` the same between the genomes two lineages start from (both
    before multiple hits, at sites outside conserved blocks); ``kappa`` the HKY
    transition/transversion ratio; ``conserved_fraction`` the share of sites in slowly evolving
    blocks; ``partial_fraction`` the share of records that are partial sequences rather than
    complete genomes; ``signature`` the standard deviation of the class's log dinucleotide odds
    ratios (0: independent bases). Substitutions draw bases independently, so the signature fades
    with divergence, as it would without the selection that keeps it in real genomes.
    """

    name: str
    min_length: int
    max_length: int
    gc: float = 0.5
    diversity: float = 0.1
    n_lineages: int = 1
    kappa: float = 2.0
    lineage_divergence: float = 0.3
    conserved_fraction: float = 0.2
    partial_fraction: float = 0.2
    signature: float = 0.0

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
        if self.lineage_divergence < 0:
            raise ConfigError(
                f"{where}: lineage_divergence must be >= 0, got {self.lineage_divergence}"
            )
        if self.signature < 0:
            raise ConfigError(f"{where}: signature must be >= 0, got {self.signature}")
        for key in ("conserved_fraction", "partial_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{where}: {key} must be in [0, 1], got {getattr(self, key)}")

    @property
    def base_frequencies(self) -> list[float]:
        """A, C, G, T frequencies for the GC content."""
        at, gc = (1.0 - self.gc) / 2.0, self.gc / 2.0
        return [at, gc, gc, at]


DEFAULT_CLASSES = (
    ClassSpec("Alphasatellitidae", 1001, 1479, gc=0.42, n_lineages=3, signature=0.5),
    ClassSpec(
        "Anelloviridae",
        2002,
        3371,
        gc=0.50,
        diversity=0.15,
        n_lineages=4,
        lineage_divergence=0.5,
        signature=0.5,
    ),
    ClassSpec(
        "Riboviria",
        1010,
        3498,
        gc=0.45,
        diversity=0.20,
        n_lineages=8,
        lineage_divergence=1.5,
        conserved_fraction=0.1,
        partial_fraction=0.6,
        signature=0.5,
    ),
    ClassSpec("Tolecusatellitidae", 1012, 1436, gc=0.37, n_lineages=3, signature=0.5),
)


@dataclass(frozen=True)
class SimulationOptions:
    """Settings shared by all classes.

    ``indel_rate``: indel events per base per isolate (not inherited along the genealogy; lengths
    are geometric with mean ``indel_mean_length``). ``n_run_probability``: chance that an isolate
    gets one run of N, of ``n_run_length`` (min, max) bases. Conserved blocks are
    ``conserved_block`` bases long and evolve at ``conserved_rate`` times the rate elsewhere.
    """

    population_size: float = 1000.0
    recombination_rate: float = 0.0
    model: str = "hky"
    indel_rate: float = 0.0005
    indel_mean_length: float = 3.0
    n_run_probability: float = 0.02
    n_run_length: tuple[int, int] = (10, 50)
    conserved_rate: float = 0.1
    conserved_block: int = 30

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
        if not 0.0 <= self.conserved_rate <= 1.0 or self.conserved_block < 1:
            raise ConfigError(
                f"conserved_rate must be in [0, 1] and conserved_block >= 1, got "
                f"{self.conserved_rate} and {self.conserved_block}"
            )


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


def dinucleotide_odds(spec: ClassSpec, seed: int) -> np.ndarray:
    """The class's dinucleotide odds ratios (4 x 4, A C G T; 1 = no preference): log-normal with
    standard deviation ``signature``, drawn from the seed and the class name."""
    rng = np.random.default_rng(derive_seed(seed, "viral-simulate", spec.name, "signature"))
    return np.exp(rng.normal(0.0, spec.signature, size=(4, 4)))


def ancestral_genome(spec: ClassSpec, length: int, seed: int) -> bytes:
    """A random genome with the class's GC content and dinucleotide signature: a first-order
    Markov chain ``P(b | a) ~ f_b x odds_ab`` whose base frequencies ``f`` are tuned so that the
    chain's stationary composition is the class's (iid bases when ``signature`` is 0)."""
    rng = np.random.default_rng(derive_seed(seed, "viral-simulate", spec.name, "ancestor"))
    target = np.asarray(spec.base_frequencies)
    if spec.signature == 0:
        return _BASES[rng.choice(4, size=length, p=target)].tobytes()
    odds = dinucleotide_odds(spec, seed)
    f = target.copy()
    for _ in range(50):  # fixed-point iteration on f: stationary distribution -> target
        p = f[None, :] * odds
        p /= p.sum(axis=1, keepdims=True)
        vals, vecs = np.linalg.eig(p.T)
        pi = np.abs(np.real(vecs[:, np.argmin(np.abs(vals - 1.0))]))
        pi /= pi.sum()
        f *= target / pi
        f /= f.sum()
    cum = np.cumsum(p, axis=1)
    u = rng.random(length)
    out = np.empty(length, dtype=np.int64)
    out[0] = rng.choice(4, p=target)
    for i in range(1, length):
        out[i] = min(int(np.searchsorted(cum[out[i - 1]], u[i], side="right")), 3)
    return _BASES[out].tobytes()


def conserved_blocks(
    spec: ClassSpec, genome_length: int, opts: SimulationOptions, seed: int
) -> list[tuple[int, int]]:
    """Sorted, disjoint ``(start, end)`` blocks covering about ``conserved_fraction`` of the
    first ``min_length`` bases (the part every lineage's genome has)."""
    span = min(spec.min_length, genome_length)
    size = min(opts.conserved_block, span)
    n_blocks = round(spec.conserved_fraction * span / size)
    if n_blocks == 0:
        return []
    rng = np.random.default_rng(derive_seed(seed, "viral-simulate", spec.name, "conserved"))
    # n_blocks starts in the free room, sorted: gaps between blocks are random, blocks disjoint
    room = span - n_blocks * size
    starts = np.sort(rng.integers(0, room + 1, size=n_blocks)) + np.arange(n_blocks) * size
    return [(int(a), int(a) + size) for a in starts]


def _rate_map(
    blocks: list[tuple[int, int]], genome_length: int, rate: float, slow: float
) -> msprime.RateMap:
    """Mutation rate ``rate`` along the genome, ``slow * rate`` inside the blocks."""
    position, rates, at = [0], [], 0
    for a, b in blocks:
        if a > at:
            position.append(a)
            rates.append(rate)
        position.append(b)
        rates.append(rate * slow)
        at = b
    if at < genome_length:
        position.append(genome_length)
        rates.append(rate)
    return msprime.RateMap(position=position, rate=rates)


def _evolve(
    reference: bytes,
    n: int,
    divergence: float,
    spec: ClassSpec,
    blocks: list[tuple[int, int]],
    opts: SimulationOptions,
    seed: int,
    *key,
) -> list[bytes]:
    """``n`` genomes descended from ``reference`` along a haploid msprime genealogy, with
    ``divergence`` expected pairwise substitutions per site outside the conserved blocks."""
    if n == 1 or divergence == 0:
        return [reference] * n
    genome_length = len(reference)
    ts = msprime.sim_ancestry(
        samples=n,
        ploidy=1,
        sequence_length=genome_length,
        population_size=opts.population_size,
        recombination_rate=opts.recombination_rate,
        discrete_genome=True,
        random_seed=derive_seed(seed, "viral-simulate", spec.name, *key, "ancestry"),
    )
    # haploid pairwise coalescence time is N generations: divergence = 2 * N * mu
    rate = divergence / (2.0 * opts.population_size)
    ts = msprime.sim_mutations(
        ts,
        rate=_rate_map(blocks, genome_length, rate, opts.conserved_rate),
        model=_mutation_model(spec, opts),
        discrete_genome=True,
        random_seed=derive_seed(seed, "viral-simulate", spec.name, *key, "mutations"),
    )
    # sites take their (root-distribution) ancestral state; elsewhere the reference's base stands
    return [a.encode("ascii") for a in ts.alignments(reference_sequence=reference.decode())]


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
    rng = np.random.default_rng(derive_seed(seed, "viral-simulate", spec.name, "isolates"))
    lineage_of = rng.permutation(np.arange(n) % spec.n_lineages)
    # every lineage has its own genome length, as the species of a family do, stratified so the
    # lineages spread over the class's range
    strata = (rng.permutation(spec.n_lineages) + rng.random(spec.n_lineages)) / spec.n_lineages
    lineage_length = np.rint(spec.min_length + strata * (spec.max_length - spec.min_length)).astype(
        int
    )
    ancestor = ancestral_genome(spec, genome_length, seed)
    blocks = conserved_blocks(spec, genome_length, opts, seed)
    founders = _evolve(
        ancestor, spec.n_lineages, spec.lineage_divergence, spec, blocks, opts, seed, "lineages"
    )
    genomes: dict[int, list[bytes]] = {}
    for j in range(spec.n_lineages):
        members = int((lineage_of == j).sum())
        if members:
            genomes[j] = _evolve(
                founders[j], members, spec.diversity, spec, blocks, opts, seed, "lineage", j
            )
    taken = dict.fromkeys(genomes, 0)
    records = []
    for i in range(n):
        j = int(lineage_of[i])
        full = np.frombuffer(genomes[j][taken[j]], dtype=np.uint8)
        taken[j] += 1
        seq = _indels(full, spec, opts, rng) if opts.indel_rate > 0 else full
        if seq.size < spec.max_length:  # deletions ate too much (vanishingly rare): drop them
            seq = full
        complete = int(lineage_length[j])
        if rng.random() < spec.partial_fraction:
            # a partial sequence: any length in the class's range up to its genome's, anywhere
            length = int(rng.integers(spec.min_length, complete + 1))
            start = int(rng.integers(0, complete - length + 1))
        else:
            # a complete genome from its origin; indels move its end as they move every site
            shift = seq.size - full.size
            length = min(max(complete + shift, spec.min_length), spec.max_length)
            start = 0
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
    "conserved_blocks",
    "describe",
    "hky_model",
    "simulate_class",
    "simulate_dataset",
    "write_dataset",
]
