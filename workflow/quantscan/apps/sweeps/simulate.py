"""msprime simulations of neutral and hard-sweep regions under confounding demography.

A scenario is a dict from the config (see ``config/schema.yaml``): optional ``demography`` (a demes YAML
file or a stdpopsim catalogue model, see ``demography.py``), ``hotspot`` (a recombination hotspot as a
``RateMap``) and overrides of the global parameters. Two shorthands build the same msprime models by hand:
``bottleneck`` (times in units of 4N generations and a relative size, as in ms ``-eN``; the shipped
``resources/demes/*_bottleneck.yaml`` are their demes form) and ``island`` (a structured population,
``resources/demes/island_migration.yaml``). A scenario whose demography has several populations at the
time of sampling is neutral only, because msprime cannot simulate a sweep with several populations.
``simulator`` picks the simulator of the sweep replicates: ``msprime`` (the default), ``fwdpy11`` (forward
in time, rescaled by ``forward_scaling``, see ``forward.py``; a scenario with several populations at the
time of sampling then has sweeps too) or ``auto`` (msprime where its sweep model applies, else fwdpy11).
Neutral replicates always come from msprime.
Replicates are stored compactly per batch: one npz with all variable sites of all replicates, genotypes
bit-packed along the haplotype axis.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from pathlib import Path

import msprime
import numpy as np
from msprime import _msprime

from ...atomic import atomic_path
from ...errors import ConfigError, InputFormatError
from ...seeds import derive_seed
from . import CLASSES
from . import demography as dg

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

#: simulators of the sweep replicates (scenario key ``simulator``)
SIMULATORS = ("msprime", "fwdpy11", "auto")
#: the default keeps every existing scenario on msprime (and multi-population ones neutral-only)
DEFAULT_SIMULATOR = "msprime"


@dataclasses.dataclass(frozen=True)
class SimParams:
    """Parameters of one scenario, globals merged with the scenario's overrides.

    ``demography`` is the resolved form of the scenario's ``demography`` entry (``demography.resolve``:
    source, sampled population and the demes graph); with it, ``population_size`` is the sampled deme's
    size at time 0, read from the model.
    """

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
    demography: dict | None = None
    simulator: str = DEFAULT_SIMULATOR
    forward_scaling: float = 10.0

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
        for key in ("simulator", "forward_scaling"):
            if spec.get(key) is not None:
                values[key] = spec[key]
        if values.get("simulator", DEFAULT_SIMULATOR) not in SIMULATORS:
            raise ConfigError(
                f"scenario {scenario!r}: simulator must be one of {', '.join(SIMULATORS)}, "
                f"got {values['simulator']!r}"
            )
        if spec.get("demography") is not None:
            shorthands = [k for k in ("bottleneck", "island") if spec.get(k) is not None]
            if shorthands:
                raise ConfigError(
                    f"scenario {scenario!r}: 'demography' cannot be combined with "
                    f"{' or '.join(repr(k) for k in shorthands)} (a shorthand for a demography): "
                    "put the size history into the demes model"
                )
            dem = dg.resolve(spec["demography"], scenario)
            n0 = dg.size_at_zero(dg.graph_of(dem), dem["population"])
            if "population_size" in spec and not np.isclose(spec["population_size"], n0, rtol=1e-9):
                raise ConfigError(
                    f"scenario {scenario!r}: population_size {spec['population_size']:g} conflicts "
                    f"with the demography ({dem['source']}), whose population "
                    f"{dem['population']!r} has size {n0:g} at time 0; with a demography N is read "
                    "from the model: drop population_size from the scenario or change the model"
                )
            values["population_size"] = n0
            values["demography"] = dem
        params = cls(**values)
        if params.haplotypes % 2:
            raise ConfigError(
                f"apps.sweeps.data.haplotypes must be even (diploid samples), got {params.haplotypes}"
            )
        return params

    def present_at_sampling(self) -> list[str]:
        """Populations present at time 0 (the sampling time)."""
        return list(self._present)

    # derived from the fields once per instance (a frozen dataclass keeps them in __dict__)
    @functools.cached_property
    def _present(self) -> tuple[str, ...]:
        if self.island is not None:
            return ("continent", "island")
        if self.demography is not None:
            return tuple(dg.present_at_zero(dg.graph_of(self.demography)))
        return ("pop_0",)

    @functools.cached_property
    def _model(self) -> tuple[msprime.Demography, str | None]:
        return _demography(self)

    @functools.cached_property
    def _epochs(self) -> list:
        return self._model[0].debug().epochs

    @property
    def neutral_only(self) -> bool:
        """Several populations at the time of sampling and sweeps left to msprime, which has none there
        (with ``simulator: fwdpy11`` or ``auto`` the sweeps are simulated forward in time)."""
        return len(self.present_at_sampling()) > 1 and self.simulator == "msprime"

    def sweep_simulator(self, scenario: str = "?") -> str:
        """``"msprime"`` or ``"fwdpy11"``: the simulator of this scenario's sweep replicates."""
        if self.simulator != "auto":
            return self.simulator
        try:
            _sweep_size(self, scenario)
        except ConfigError:
            return "fwdpy11"
        return "msprime"

    def classes(self) -> tuple[str, ...]:
        return ("neutral",) if self.neutral_only else CLASSES

    def check_sweep(self, scenario: str = "?") -> float:
        """Check that msprime can simulate this scenario's sweep; return N during the sweep.

        Raises ``ConfigError`` naming the scenario and the obstacle: several populations (at the time of
        sampling, during the sweep or older), a demographic event or a size change inside the sweep.
        Sweeps that go to fwdpy11 (``sweep_simulator``) are checked for the forward simulation instead
        (rescaled sizes, s x forward_scaling; fwdpy11 itself is imported by the jobs), and the sampled
        population's size at time 0 is returned.
        """
        if self.sweep_simulator(scenario) == "fwdpy11":
            from . import forward

            forward.plan(self, scenario)
            return float(self.population_size)
        return _sweep_size(self, scenario)


@dataclasses.dataclass
class Replicate:
    """One simulated region: ``haplotypes`` is (n_sites, n_haplotypes) uint8, derived = 1."""

    positions: np.ndarray
    haplotypes: np.ndarray
    sweep_position: float  # NaN for neutral replicates


def _demography(p: SimParams) -> tuple[msprime.Demography, str | None]:
    """(msprime model, sampled population name; ``None``: the only population)."""
    if p.demography is not None:
        return dg.msprime_demography(p.demography)
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
        return dem, "island"
    dem = msprime.Demography.isolated_model([n])
    if p.bottleneck is not None:
        b = p.bottleneck
        dem.add_population_parameters_change(time=b["start"] * 4 * n, initial_size=n * b["size"])
        dem.add_population_parameters_change(time=b["end"] * 4 * n, initial_size=n)
    return dem, None


def sweep_duration(n: float, s: float) -> float:
    """Expected length in generations of a hard sweep from 1/2N to 1 - 1/2N, (4/s) ln(2N): an upper
    estimate of msprime's (events at 0.9 of it were never hit in 40 trials at N = 1e4, s = 0.05)."""
    return 4 / s * np.log(2 * n)


def _several_populations(p: SimParams, scenario: str) -> str:
    present = p.present_at_sampling()
    return (
        f"scenario {scenario!r} cannot simulate class 'sweep': its demography has {len(present)} "
        f"populations present at the time of sampling ({', '.join(present)}), and msprime's sweep "
        "model needs a single population; the scenario is neutral-only (its neutral replicates "
        "measure false positives). To simulate sweeps under such a model forward in time with "
        "fwdpy11, set simulator: fwdpy11 (or auto) in the scenario"
    )


def _sweep_size(p: SimParams, scenario: str) -> float:
    """N during the sweep, after checking msprime can simulate it (see ``SimParams.check_sweep``)."""
    dem = p._model[0]
    if len(p.present_at_sampling()) > 1:
        raise ConfigError(_several_populations(p, scenario))
    t0, s = float(p.sweep_end_time), p.selection_coefficient
    if dem.num_populations > 1:
        graph = dg.graph_of(p.demography)
        name, t2 = dg.second_population(graph, p.demography["population"])
        n0 = p.population_size
        when = (
            "during the sweep"
            if t2 < t0 + sweep_duration(n0, s)
            else "before the sweep (older than it); msprime refuses any model with several "
            "populations in a sweep simulation"
        )
        raise ConfigError(
            f"scenario {scenario!r} cannot simulate class 'sweep': its demography "
            f"({p.demography['source']}) has several populations {when}: {name!r} exists from "
            f"{t2:g} generations ago, alongside the sampled {p.demography['population']!r}. "
            "msprime's sweep model needs one population throughout: give a demes model with the "
            "sampled population's size history only (one deme, or a chain of demes each "
            "founded by the previous one), or set simulator: fwdpy11 (or auto) in the scenario "
            "(forward simulation)"
        )
    epochs = p._epochs
    now = next(e for e in epochs if e.start_time <= t0 < e.end_time)
    pop = now.populations[0]
    n = pop.start_size * np.exp(-pop.growth_rate * (t0 - now.start_time))
    t1 = t0 + sweep_duration(n, s)
    inside = sorted({ev.time for ev in dem.events if t0 <= ev.time <= t1})
    if inside:
        later = max(ev.time for ev in dem.events if ev.time <= t1)
        raise ConfigError(
            f"scenario {scenario!r}: a demographic event at {inside[0]:g} generations ago falls "
            f"inside the sweep (which ends sweep_end_time = {t0:g} generations ago and lasts about "
            f"(4/s) ln(2N) = {t1 - t0:.0f} generations for s = {s:g}, N = {n:g}), and msprime allows "
            f"no event during a sweep: set sweep_end_time past the events (above {later:g}), raise "
            "selection_coefficient (a shorter sweep), move the event or set simulator: fwdpy11 (or "
            "auto) in the scenario (forward simulation)"
        )
    growing = [
        e for e in epochs if e.start_time < t1 and e.end_time > t0 and e.populations[0].growth_rate
    ]
    if growing:
        e = growing[0]
        raise ConfigError(
            f"scenario {scenario!r}: the population size changes continuously (exponential growth "
            f"rate {e.populations[0].growth_rate:g} per generation between {e.start_time:g} and "
            f"{e.end_time:g} generations ago) inside the sweep ({t0:g} to about {t1:.0f} "
            "generations ago), and msprime's sweep model needs a constant size during the sweep: "
            "use constant-size epochs around the sweep, set sweep_end_time past the growth or set "
            "simulator: fwdpy11 (or auto) in the scenario (forward simulation)"
        )
    return float(n)


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
    if cls not in CLASSES:
        raise ConfigError(f"scenario {scenario!r} cannot simulate class {cls!r}")
    if cls not in p.classes():
        raise ConfigError(_several_populations(p, scenario))
    length = p.sequence_length
    if cls == "sweep" and p.sweep_simulator(scenario) == "fwdpy11":
        from . import forward

        position = length / 2 if sweep_position is None else float(sweep_position)
        return forward.simulate_sweep(p, seed, sweep_position=position, scenario=scenario)
    dem, population = p._model
    model = None
    if cls == "sweep":
        # N when the sweeping allele arose: a de novo mutation starts at 1/2N
        n = _sweep_size(p, scenario)
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
    n_samples = p.haplotypes // 2
    samples = n_samples if population is None else {population: n_samples}
    try:
        ts = msprime.sim_ancestry(
            samples=samples,
            demography=dem,
            sequence_length=length,
            recombination_rate=_recombination_map(p),
            model=model,
            random_seed=seed,
        )
    except _msprime.LibraryError as err:
        if "during a sweep" in str(err):
            raise ConfigError(
                f"scenario {scenario!r}: a demographic event falls inside the sweep (seed {seed}; "
                f"this sweep lasted longer than (4/s) ln(2N)); set sweep_end_time past the event, "
                "raise selection_coefficient or set simulator: fwdpy11 in the scenario"
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
    if cls == "sweep" and p.sweep_simulator(scenario) == "fwdpy11":
        log.info(
            "%s/%s: forward-in-time sweeps with fwdpy11, rescaled by forward_scaling Q = %g "
            "(sizes / Q, times / Q, rates and s x Q; quantscan.apps.sweeps.forward)",
            scenario,
            cls,
            p.forward_scaling,
        )
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
