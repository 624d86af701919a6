"""Hard sweeps simulated forward in time with fwdpy11, where msprime's sweep model cannot go.

msprime's ``SweepGenicSelection`` needs one population throughout and no demographic event or size change
during the sweep (``simulate.SimParams.check_sweep``). fwdpy11 (PyPI, pinned in pyproject.toml: its
``conditional_models`` API is marked as subject to change) simulates a Wright-Fisher population forward
in time under any demes model (``fwdpy11.ForwardDemesGraph.from_demes``), and
``fwdpy11.conditional_models.selective_sweep`` adds a new beneficial mutation and restarts from the same
state until a stopping condition says the outcome is the wanted one. A sweep replicate here:

1. **Rescaling by Q** (``forward_scaling``, default 10): forward costs grow with N x generations, so the
   forward part runs with every deme size N/Q (rounded), every time /Q (rounded to generations by
   fwdpy11), migration rates and the recombination rate x Q and the selection coefficient s x Q. The
   products that shape the diversity pattern (4Nr, 4Ns, 4Nm, times in units of 4N) are unchanged; the
   rescaling assumes s·Q ≪ 1 (s·Q must be at most 1) and that the sampled deme keeps many more than the
   sampled diploids (N/Q ≥ the sample, an error otherwise; a warning below 100 diploids). Node times are
   multiplied back by Q, so the output is in real generations, and neutral mutations are added at the
   real rate afterwards. Discrete generations: with s·Q = 0.5 a rescaled generation multiplies the
   mutant's odds by 1.25 where Q = 10 real ones would by 1.025^10 = 1.28, so rescaled sweeps last about
   10 % longer in real time (measured against msprime below: no detectable effect on the pattern).
2. **Burn-in with msprime.** The forward run starts one generation before the oldest event of the model
   (or at the sweep's origin, if that is older). Its founders get their ancestry from msprime under the
   real (unscaled) demes model, sampled at that time: a full coalescent history, so no recapitation is
   needed afterwards. (Recapitation proper, i.e. ``msprime.sim_ancestry(initial_state=...)`` from
   founders without history, does not fit fwdpy11 0.24: it needs ``preserve_first_generation``, which
   ``selective_sweep`` refuses once it has evolved the population to the sweep's origin ("cannot preserve
   first generation when pop.generation != 0"), and ``add_mutation`` needs a population with ancestry.)
3. **The sweep**: one new mutation at ``sweep_position`` (±0.5 bp) in one genome of the sampled
   population's lineage (the sampled deme, or its ancestor before it existed), with msprime's fitness
   convention 1, 1 + s/2, 1 + s (genic selection). In fwdpy11 this is ``Multiplicative(scaling=2)`` with
   effect size e = s·Q/2 and dominance h = 1: fitnesses 1, 1 + h·e, 1 + 2e. The run is conditioned on
   the mutation first fixing in the sampled lineage inside a window from ``sweep_end_time`` to
   ``sweep_end_time + W`` generations before sampling, W = 5 sd[T]; it arises E[T] + W/2 generations
   before the window's end, where E[T] and sd[T] are the mean and the spread of the fixation time of a
   new mutation given that it fixes (Wright-Fisher, :func:`fixation_time`, at the lineage's size at
   ``sweep_end_time``). A run where the mutation is lost, fixes before the window or has not fixed at its
   end restarts from the origin (``selective_sweep``'s rejection loop); when 10 runs fix before the
   window (20 reach its end unfixed), the origin moves by their median duration (W/2), so demographies
   that speed up or slow down the sweep (a bottleneck, a small island) are followed.
   **Difference from msprime**, where the sweep ends exactly ``sweep_end_time`` before sampling: here
   it ends ``sweep_end_time`` plus a random lag within W (N = 1e4, s = 0.05, Q = 10: W = 410
   generations, lag mean 200, sd 70 over 100 replicates, i.e. 0.005 x 4N, during which the pattern hardly
   changes); the realised times are in the tree sequence's metadata. Exact timing would need a narrow
   window and costs tens of forward runs per replicate. After fixation in a deme that receives
   migrants, the ancestral allele may come back.
4. The sample: ``haplotypes // 2`` diploids drawn at random from the sampled deme at time 0; neutral
   binary infinite-sites mutations with msprime (``BinaryMutationModel``, ``discrete_genome=False``), as
   ``simulate.simulate_tree_sequence`` does.

Everything is seeded from the replicate's seed. Errors are ``ConfigError`` naming the scenario and the
reason (fwdpy11 missing, a rescaled deme too small, fwdpy11 failing, no fixation after many restarts).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import time

import demes
import msprime
import numpy as np
import tskit

from ...errors import ConfigError
from ...seeds import derive_seed
from . import demography as dg

log = logging.getLogger(__name__)

#: the fwdpy11 releases this module is written for (pyproject.toml and envs/simulate.yaml pin them; the
#: conditional_models API may change between minor releases); tested with 0.24.5 and 0.24.7
FWDPY11_REQUIREMENT = "fwdpy11>=0.24.5,<0.25"
_FWDPY11_RANGE = ((0, 24, 5), (0, 25))
#: default rescaling factor Q (N = 1e4 -> 1000 diploids forward)
DEFAULT_SCALING = 10.0
#: generations between simplifications of the forward tables (CPU s per 100 kb, 64-haplotype replicate:
#: 0.54 / 0.46 / 0.44 / 0.43 / 0.42 at 5 / 10 / 20 / 50 / 100)
SIMPLIFICATION_INTERVAL = 50
#: a sampled deme smaller than this after rescaling gets a warning (the island of
#: resources/demes/island_migration.yaml, 500 diploids, 50 kb, 32 haplotypes: pi at the sweep site
#: 0.0052 +- 0.0005 at Q = 10 (30 replicates), 0.0041 +- 0.0004 at Q = 5 (30), 0.0036 +- 0.0006 at Q = 2
#: (12), 0.0035 +- 0.0009 at Q = 1 (6); flanks 0.0169-0.0177 at every Q)
SMALL_DEME = 100
_warned: set = set()
#: restarts (lost, fixed too early or not in time) before giving up on one replicate
MAX_ATTEMPTS = 2000
#: the fixation window spans 2 x MARGIN_SD x sd[T]; the origin lies E[T] + MARGIN_SD x sd[T] before
#: its end (a few % of the fixing runs of a constant-size population fall outside and restart)
MARGIN_SD = 2.5
#: runs fixing before the window (or reaching its end unfixed: twice as many) before the origin moves
RETARGET_AFTER = 10
#: origin moves per replicate at most (then the window is kept as it is)
MAX_RETARGETS = 8
_EULER = 0.5772156649015329


def _fwdpy11(scenario: str):
    """The fwdpy11 module, or a ``ConfigError`` naming the scenario (missing, or another minor release)."""
    why = (
        f"scenario {scenario!r}: its sweep replicates are simulated forward in time with fwdpy11 "
        "(simulator: fwdpy11, or auto where msprime's sweep model cannot apply)"
    )
    try:
        fwdpy11 = importlib.import_module("fwdpy11")
    except ImportError as err:
        raise ConfigError(
            f"{why}, but fwdpy11 cannot be imported ({err}): pip install '{FWDPY11_REQUIREMENT}' "
            "(wheels for Linux and macOS)"
        ) from err
    version = getattr(fwdpy11, "__version__", "0")
    parts = tuple(int(x) for x in version.split(".")[:3] if x.isdigit())
    low, high = _FWDPY11_RANGE
    if not low <= parts < high:
        raise ConfigError(
            f"{why}, written for {FWDPY11_REQUIREMENT} (its conditional_models API may change "
            f"between releases), but fwdpy11 {version} is installed: pip install "
            f"'{FWDPY11_REQUIREMENT}'"
        )
    return fwdpy11


def fixation_time(n: float, s: float) -> tuple[float, float]:
    """(mean, spread) in generations of the time a new genic mutation (fitness 1, 1 + s/2, 1 + s) takes
    to fix in a Wright-Fisher population of n diploids, given that it fixes:
    (2 / ln(1 + s/2)) x (ln(4 n s/2) + Euler's gamma) and 1.8 / ln(1 + s/2). Against fwdpy11 (150
    fixations each; mean / sd observed, then from the formulas): n = 1000, s = 0.5: 71.1 / 9.0,
    67.1 / 8.1; n = 200, s = 0.2: 104.8 / 20.9, 104.1 / 18.9; n = 500, s = 0.1: 214.1 / 35.8,
    212.4 / 36.9."""
    rate = math.log1p(s / 2)
    return 2 / rate * (math.log(max(4 * n * s / 2, math.e)) + _EULER), 1.8 / rate


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a forward sweep of a scenario needs, checked without fwdpy11 (see :func:`plan`)."""

    scaling: float
    graph: demes.Graph  # real units
    scaled: demes.Graph  # sizes / Q, times / Q, migration rates x Q
    population: str  # the sampled deme
    end: int  # sweep_end_time / Q, rounded (scaled generations before sampling)
    origin: int  # generations (scaled) before sampling when the mutation arises
    window: int  # the fixation must fall within end .. end + window (scaled generations ago)
    expected: tuple[float, float]  # fixation time (mean, sd) in scaled generations
    oldest: float  # the oldest finite time of the scaled graph


def plan(p, scenario: str = "?") -> Plan:
    """Check a scenario for forward sweeps (no fwdpy11 needed); ``ConfigError`` names the problem."""
    q = float(p.forward_scaling)
    where = f"scenario {scenario!r} (forward sweeps with fwdpy11, forward_scaling Q = {q:g})"
    if not q >= 1:
        raise ConfigError(f"{where}: forward_scaling must be at least 1")
    s = float(p.selection_coefficient)
    if s * q > 1:
        raise ConfigError(
            f"{where}: the rescaled selection coefficient s·Q = {s:g} x {q:g} = {s * q:g} exceeds 1; "
            "rescaling keeps 4Ns only while s·Q is small: lower forward_scaling"
        )
    graph, population = _graph(p)
    scaled = _rescale(graph, q)
    for deme in scaled.demes:
        for e in deme.epochs:
            if min(e.start_size, e.end_size) < 1:
                raise ConfigError(
                    f"{where}: deme {deme.name!r} has {min(e.start_size, e.end_size) * q:g} diploids, "
                    f"fewer than one after rescaling by Q: lower forward_scaling"
                )
    n_sample = p.haplotypes // 2
    n_now = round(scaled[population].epochs[-1].end_size)
    if n_now < n_sample:
        raise ConfigError(
            f"{where}: the sampled deme {population!r} has {n_now} diploids after rescaling "
            f"({scaled[population].epochs[-1].end_size * q:g} / {q:g}), fewer than the {n_sample} "
            f"sampled (haplotypes {p.haplotypes}): set forward_scaling at most "
            f"{scaled[population].epochs[-1].end_size * q / n_sample:g}"
        )
    length = float(p.sequence_length)
    end = round(float(p.sweep_end_time) / q)
    # the lineage's size when the sweep ends, for the expected duration
    deme = _lineage_at(scaled, population, end)
    mean, sd = fixation_time(deme.size_at(end), s * q)
    window = math.ceil(2 * MARGIN_SD * sd)
    origin = end + math.ceil(mean + window / 2)
    if not length > 1:
        raise ConfigError(f"{where}: sequence_length {length:g} is too short")
    return Plan(q, graph, scaled, population, end, origin, window, (mean, sd), _oldest(scaled))


def _graph(p) -> tuple[demes.Graph, str]:
    """(demes graph in generations, sampled deme) of a scenario, shorthands included."""
    if p.demography is not None:
        return dg.graph_of(p.demography), p.demography["population"]
    dem, name = p._model
    graph = dem.to_demes()
    return graph, name or graph.demes[0].name


def _rescale(graph: demes.Graph, q: float) -> demes.Graph:
    """Sizes / q, times / q, migration rates x q (pulse proportions unchanged)."""
    d = graph.asdict()

    def t(x):
        return x if math.isinf(x) else x / q

    for deme in d["demes"]:
        deme["start_time"] = t(deme["start_time"])
        for e in deme["epochs"]:
            e["end_time"] = t(e["end_time"])
            e["start_size"] = e["start_size"] / q
            e["end_size"] = e["end_size"] / q
    for m in d.get("migrations", []):
        m["start_time"], m["end_time"] = t(m["start_time"]), t(m["end_time"])
        m["rate"] = min(1.0, m["rate"] * q)
    for pulse in d.get("pulses", []):
        pulse["time"] = t(pulse["time"])
    return demes.Graph.fromdict(d)


def _oldest(graph: demes.Graph) -> float:
    times = [0.0]
    for deme in graph.demes:
        times += [deme.start_time] + [e.end_time for e in deme.epochs]
    for m in graph.migrations:
        times += [m.start_time, m.end_time]
    times += [pulse.time for pulse in graph.pulses]
    return max(x for x in times if not math.isinf(x))


def _main_ancestor(deme: demes.Deme) -> str:
    return deme.ancestors[int(np.argmax(deme.proportions))]


def _lineage_at(graph: demes.Graph, population: str, t: float) -> demes.Deme:
    """The deme holding the sampled population's lineage ``t`` generations ago."""
    deme = graph[population]
    while t >= deme.start_time and deme.ancestors:
        deme = graph[_main_ancestor(deme)]
    return deme


class _GaveUp(Exception):
    pass


class _Retarget(Exception):
    """Most runs fix outside the window: move the origin (generations before sampling, scaled)."""

    def __init__(self, origin: int):
        self.origin = origin


class _FixationInLineage:
    """Stopping condition for ``selective_sweep``: success when the mutation first fixes in the deme that
    holds the sampled lineage at that generation, within the window ``deadline - window .. deadline``
    (forward generations); restart when it is lost, fixes earlier, or has not fixed by ``deadline``."""

    def __init__(self, cm, lineage: list[int], when: int, deadline: int, window: int, *, attempts):
        self.cm = cm
        self.lineage = lineage  # forward generation -> deme id
        self.when, self.deadline, self.window = when, deadline, window
        self.attempts = attempts  # restarts so far (over all origins)
        self.lost = self.late = 0
        self.early: list[int] = []  # durations of the runs that fixed before the window
        self.fixed_at: int | None = None

    def _restart(self, kind: str, duration: int = 0):
        self.attempts += 1
        if kind == "early":
            self.early.append(duration)
        elif kind == "late":
            self.late += 1
        else:
            self.lost += 1
        if self.attempts >= MAX_ATTEMPTS:
            raise _GaveUp
        end = self.deadline - self.when  # the origin's distance to the window's end
        if len(self.early) >= RETARGET_AFTER:
            raise _Retarget(round(float(np.median(self.early))) + math.ceil(self.window / 2) - end)
        if self.late >= 2 * RETARGET_AFTER:
            raise _Retarget(max(2, math.ceil(self.window / 2)))
        return self.cm.SimulationStatus.Restart

    def __call__(self, pop, index, key):
        g = pop.generation
        count = pop.mcounts[index]
        if count == 0:
            return self._restart("lost")
        deme = self.lineage[min(g, len(self.lineage) - 1)]
        sizes = pop.deme_sizes(as_dict=True)
        size = sizes.get(deme, 0)
        if size and count >= 2 * size:
            if len(sizes) == 1 or _count_in_deme(pop, index, deme) == 2 * size:
                if g < self.deadline - self.window:
                    return self._restart("early", g - self.when)
                self.fixed_at = g
                return self.cm.SimulationStatus.Success
        if g >= self.deadline:
            return self._restart("late")
        return self.cm.SimulationStatus.Continue


def _count_in_deme(pop, index: int, deme: int) -> int:
    md = np.array(pop.diploid_metadata, copy=False)
    genomes, dips = pop.haploid_genomes, pop.diploids
    count = 0
    for i in np.flatnonzero(md["deme"] == deme):
        dip = dips[int(i)]
        count += (index in genomes[dip.first].smutations) + (
            index in genomes[dip.second].smutations
        )
    return count


def _recregions(fwdpy11, p, q: float) -> list:
    from .simulate import _recombination_map

    rmap = _recombination_map(p)
    length = float(p.sequence_length)
    if not isinstance(rmap, msprime.RateMap):
        rmap = msprime.RateMap(position=[0, length], rate=[rmap])
    return [
        fwdpy11.PoissonInterval(float(left), float(right), float(rate * q * (right - left)))
        for left, right, rate in zip(rmap.left, rmap.right, rmap.rate, strict=True)
        if rate > 0
    ]


def _founders(fwdpy11, plan_: Plan, p, model, seed: int):
    """The forward run's first generation, with its ancestry from msprime (real units, scaled times).

    The run starts before every event of the model, so its demes are those without a start time, at
    their first epoch's (constant) size, rounded as fwdpy11 rounds it."""
    q, t0 = plan_.scaling, model.final_generation  # backward (scaled) time of forward generation 0
    alive = [i for i, d in enumerate(plan_.scaled.demes) if math.isinf(d.start_time)]
    sizes = [_round_half_up(plan_.scaled.demes[i].epochs[0].start_size) for i in alive]
    if sum(sizes) != sum(model.initial_sizes):
        raise RuntimeError(
            f"initial deme sizes {sizes} differ from fwdpy11's {model.initial_sizes}"
        )
    samples = [
        msprime.SampleSet(n, population=plan_.graph.demes[i].name, time=t0 * q, ploidy=2)
        for i, n in zip(alive, sizes, strict=True)
    ]
    from .simulate import _recombination_map

    ts = msprime.sim_ancestry(
        samples=samples,
        demography=msprime.Demography.from_demes(plan_.graph),
        sequence_length=float(p.sequence_length),
        recombination_rate=_recombination_map(p),
        discrete_genome=False,  # fwdpy11's add_mutation fails on a window edge at a breakpoint
        random_seed=seed,
    )
    tables = ts.dump_tables()
    tables.nodes.time = (tables.nodes.time - t0 * q) / q
    pop = fwdpy11.DiploidPopulation.create_from_tskit(tables.tree_sequence())
    md = np.array(pop.diploid_metadata, copy=False)
    if not np.array_equal(md["deme"], np.repeat(alive, sizes)):
        raise RuntimeError(f"founders' demes differ from the model's initial demes {alive}")
    return pop


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _lineage(model, graph: demes.Graph, population: str) -> list[int]:
    """Deme id of the sampled lineage in each forward generation 0 .. final."""
    ids = {d.name: i for i, d in enumerate(graph.demes)}
    spans = model.deme_time_intervals()
    out = []
    for g in range(model.final_generation + 1):
        deme = graph[population]
        while not spans[ids[deme.name]].start_time <= g < spans[ids[deme.name]].end_time:
            if not deme.ancestors:
                break
            deme = graph[_main_ancestor(deme)]
        out.append(ids[deme.name])
    return out


def _tables(pop, names: list[str]) -> tskit.TableCollection:
    """The forward run's genealogy (nodes and edges only) as tskit tables, time 0 = now. (fwdpy11's
    ``dump_tables_to_tskit`` also encodes metadata of every individual, validated one by one: most of a
    replicate's time.)"""
    nodes = np.array(pop.tables.nodes, copy=False)
    edges = np.array(pop.tables.edges, copy=False)
    tables = tskit.TableCollection(sequence_length=pop.tables.genome_length)
    tables.populations.metadata_schema = tskit.MetadataSchema.permissive_json()
    for name in names:
        tables.populations.add_row(metadata={"name": name})
    tables.nodes.set_columns(
        flags=np.zeros(len(nodes), dtype=np.uint32),
        time=pop.generation - nodes["time"],
        population=nodes["deme"].astype(np.int32),
    )
    tables.edges.set_columns(
        left=edges["left"], right=edges["right"], parent=edges["parent"], child=edges["child"]
    )
    tables.sort()
    return tables


def simulate_sweep(
    p, seed: int, *, sweep_position: float, scenario: str = "?"
) -> tskit.TreeSequence:
    """One sweep replicate simulated forward in time with fwdpy11 (see the module docstring).

    ``p`` is a ``simulate.SimParams``; the forward part is rescaled by ``p.forward_scaling`` (Q). Returns
    a tree sequence in real generations with binary neutral mutations, ``p.haplotypes`` sample nodes from
    the sampled population, and the sweep's realised timing in its top-level metadata
    (``metadata["quantscan"]``: simulator, forward_scaling, origin and fixation in generations before
    sampling, restarts).
    """
    fwdpy11 = _fwdpy11(scenario)
    from fwdpy11 import conditional_models as cm

    pl = plan(p, scenario)
    q, length = pl.scaling, float(p.sequence_length)
    half = min(0.5, length * 1e-6)
    if not half <= sweep_position <= length - half:
        raise ConfigError(
            f"scenario {scenario!r}: sweep_position {sweep_position} outside (0, {length:g})"
        )
    where = f"scenario {scenario!r}: fwdpy11 {getattr(fwdpy11, '__version__', '?')} (seed {seed})"
    n_now = pl.scaled[pl.population].epochs[-1].end_size
    if n_now < SMALL_DEME and scenario not in _warned:
        _warned.add(scenario)
        log.warning(
            "scenario %r: the sampled deme %r has %d diploids in the forward simulation "
            "(forward_scaling %g); rescaling this far may bias the sweep pattern, a smaller "
            "forward_scaling (at most %g) is safer",
            scenario,
            pl.population,
            round(n_now),
            q,
            n_now * q / SMALL_DEME,
        )
    start = time.perf_counter()
    origin, attempts, rounds, retargets = pl.origin, 0, 0, 0
    while True:
        rounds += 1
        # the forward run starts at the origin, or one generation before the model's oldest event
        burnin = max(1, origin - math.floor(pl.oldest))
        try:
            model = fwdpy11.ForwardDemesGraph.from_demes(
                pl.scaled, burnin=burnin, burnin_is_exact=True, round_non_integer_sizes=True
            )
            final = model.final_generation
            when = final - origin
            lineage = _lineage(model, pl.scaled, pl.population)
            pop = _founders(fwdpy11, pl, p, model, derive_seed(seed, "fwdpy11", "founders", rounds))
            params = fwdpy11.ModelParams(
                recregions=_recregions(fwdpy11, p, q),
                rates=(0.0, 0.0, None),
                gvalue=fwdpy11.Multiplicative(2.0),
                demography=model,
                simlen=final,
                prune_selected=False,  # keep the fixed mutation in the genomes: per-deme counts
            )
            mutation = cm.NewMutationParameters(
                deme=lineage[when],
                frequency=cm.AlleleCount(1),
                position=cm.PositionRange(
                    left=float(sweep_position - half), right=float(sweep_position + half)
                ),
                data=fwdpy11.NewMutationData(
                    effect_size=p.selection_coefficient * q / 2, dominance=1.0
                ),
            )
            if when < 0:  # cannot happen: the model starts at the origin or before
                raise RuntimeError(f"origin {origin} is older than the model's start {final}")
            condition = _FixationInLineage(
                cm, lineage, when, final - pl.end, pl.window, attempts=attempts
            )
            rng = fwdpy11.GSLrng(derive_seed(seed, "fwdpy11", "forward", rounds))
            out = cm.selective_sweep(
                rng,
                pop,
                params,
                mutation,
                condition,
                when=when,
                evolvets_options=cm.EvolveOptions(simplification_interval=SIMPLIFICATION_INTERVAL),
            )
        except _Retarget as move:
            attempts = condition.attempts
            if move.origin and retargets < MAX_RETARGETS:
                retargets += 1
                origin = max(pl.end + 1, origin + move.origin)
            elif move.origin:  # keep this origin: give up on moving it
                pl = dataclasses.replace(pl, window=10**9)
            continue
        except _GaveUp:
            raise ConfigError(
                f"{where}: the sweep did not fix in {pl.population!r}'s lineage within "
                f"{p.sweep_end_time:g} to {(pl.end + pl.window) * q:g} generations before sampling in "
                f"{MAX_ATTEMPTS} tries (in the last origin's: {condition.lost} lost, "
                f"{len(condition.early)} fixed earlier, {condition.late} not fixed in time; origin "
                f"{origin * q:g} generations before sampling, s = {p.selection_coefficient:g}); a "
                "stronger selection_coefficient, a later sweep_end_time or a demography where the "
                "sampled deme can fix a new allele helps"
            ) from None
        except ConfigError:
            raise
        except (
            Exception
        ) as err:  # fwdpy11 raises ValueError / RuntimeError for bad models or states
            raise ConfigError(
                f"{where}: forward simulation failed: {type(err).__name__}: {err}"
            ) from err
        break
    attempts = condition.attempts + 1
    fwd_pop = out.pop
    sampled = pl.scaled.demes.index(pl.scaled[pl.population])
    md = np.array(fwd_pop.diploid_metadata, copy=False)
    candidates = np.flatnonzero(md["deme"] == sampled)
    n = p.haplotypes // 2
    chosen = np.sort(
        np.random.default_rng(derive_seed(seed, "fwdpy11", "sample")).choice(
            candidates, size=n, replace=False
        )
    )
    nodes = md["nodes"][chosen].ravel().astype(np.int32)
    position = (
        float(fwd_pop.mutations[out.mutation_index].pos)
        if out.mutation_index is not None
        else sweep_position
    )
    tables = _tables(fwd_pop, [d.name for d in pl.graph.demes])
    tables.simplify(samples=nodes, filter_populations=False)
    tables.nodes.time = tables.nodes.time * q  # back to real generations
    tables.time_units = "generations"
    tables.metadata_schema = tskit.MetadataSchema.permissive_json()
    tables.metadata = {
        "quantscan": {
            "scenario": scenario,
            "simulator": "fwdpy11",
            "fwdpy11_version": getattr(fwdpy11, "__version__", "?"),
            "forward_scaling": q,
            "selection_coefficient": p.selection_coefficient,
            "fitness": "1, 1+s/2, 1+s (fwdpy11 Multiplicative(2), effect s*Q/2, dominance 1)",
            "sweep_position": position,
            "origin_generations_ago": origin * q,
            "fixation_window_generations_ago": [pl.end * q, (pl.end + min(pl.window, origin)) * q],
            "fixation_generations_ago": (final - condition.fixed_at) * q,
            "sweep_end_time": p.sweep_end_time,
            "attempts": attempts,
        }
    }
    log.debug(
        "%s: forward sweep in %.2f s, %d runs, fixed %g generations before sampling",
        scenario,
        time.perf_counter() - start,
        attempts,
        (final - condition.fixed_at) * q,
    )
    return msprime.sim_mutations(
        tables.tree_sequence(),
        rate=p.mutation_rate,
        model=msprime.BinaryMutationModel(),
        discrete_genome=False,
        random_seed=seed,
    )
