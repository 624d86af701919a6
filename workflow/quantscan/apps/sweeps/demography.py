"""Demographic models for the sweep simulations: demes YAML files and stdpopsim catalogue models.

A scenario's ``demography`` is one of

* ``{demes: PATH, population: NAME}``: a demes model (https://popsim-consortium.github.io/demes-spec-docs/);
  a relative PATH is looked up in the current directory first, then in the workflow's base directory
  (the one holding ``config/``); the shipped models are under ``resources/demes/``;
* ``{stdpopsim: {species: ID, model: ID, population: NAME}}``: a stdpopsim catalogue model, through the
  demes graph it exports (``model.model.to_demes()``). Only its demography is used: mutation and
  recombination rates stay the scenario's.

Samples are taken at time 0 from ``population`` (optional when a single deme is present at time 0).
:func:`resolve` turns the config entry into a self-contained dict (the demes graph in generations, as
``Graph.asdict()``) that travels in ``SimParams``, so a job needs neither the file nor stdpopsim, and an
edit of the model changes the simulation parameters (Snakemake's params trigger reruns it).

msprime's sweep model (``SweepGenicSelection``) needs one population throughout and no demographic event
and no size change during the sweep. A scenario with several populations present at the time of sampling
is neutral-only. A model whose demes form a single chain (each deme the only descendant of the previous
one, no overlap in time, no migration or pulse) is simulated as one population with the concatenated size
history (:func:`single_population`), so sweeps work there; any other multi-deme model cannot have sweeps.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import demes

from ...errors import ConfigError

#: the workflow's base directory (the one holding config/ and resources/)
BASE_DIR = Path(__file__).resolve().parents[4]


def resolve(spec: dict, scenario: str, *, base_dir: str | Path | None = None) -> dict:
    """``{"source": str, "population": str, "graph": dict}`` for a scenario's ``demography`` entry.

    ``graph`` is the model in generations (``demes.Graph.asdict()``, exact round trip); ``source`` names
    the file (as written in the config) or the stdpopsim model. Errors are ``ConfigError`` naming the
    scenario.
    """
    where = f"scenario {scenario!r}: demography"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping, got {spec!r}")
    kinds = [k for k in ("demes", "stdpopsim") if k in spec]
    if len(kinds) != 1:
        raise ConfigError(
            f"{where} needs exactly one of 'demes' (a demes YAML file) or 'stdpopsim' "
            f"({{species, model, population}}), got {sorted(spec) or 'neither'}"
        )
    unknown = sorted(set(spec) - {"demes", "stdpopsim", "population"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}")
    if kinds == ["demes"]:
        path = find_file(spec["demes"], scenario, base_dir=base_dir)
        try:
            graph = _load_demes(str(path), path.stat().st_mtime_ns)
        except Exception as err:  # demes raises ValueError, TypeError, YAML errors, KeyError ...
            raise ConfigError(
                f"{where}: {path} is not a valid demes model ({type(err).__name__}: {err})"
            ) from err
        source = str(spec["demes"])
        population = spec.get("population")
    else:
        sp = spec["stdpopsim"]
        if not isinstance(sp, dict) or not {"species", "model"} <= set(sp):
            raise ConfigError(f"{where}.stdpopsim needs 'species' and 'model', got {sp!r}")
        if "population" in spec and sp.get("population", spec["population"]) != spec["population"]:
            raise ConfigError(
                f"{where}: population {spec['population']!r} and stdpopsim.population "
                f"{sp['population']!r} disagree (give it once)"
            )
        graph = _load_stdpopsim(scenario, str(sp["species"]), str(sp["model"]))
        source = f"stdpopsim {sp['species']}/{sp['model']}"
        population = sp.get("population", spec.get("population"))
    population = pick_population(graph, population, scenario, source)
    return {"source": source, "population": population, "graph": copy.deepcopy(graph.asdict())}


def find_file(path: str | Path, scenario: str, *, base_dir: str | Path | None = None) -> Path:
    """A demes file: absolute, or relative to the current directory, then to the base directory."""
    given = Path(path)
    if given.is_absolute():
        candidates = [given]
    else:
        candidates = [Path.cwd() / given, Path(base_dir or BASE_DIR) / given]
    for cand in candidates:
        if cand.is_file():
            return cand
    looked = " or ".join(str(c) for c in dict.fromkeys(candidates))
    raise ConfigError(
        f"scenario {scenario!r}: demography.demes file {str(path)!r} not found (looked for {looked}); "
        "shipped models are under resources/demes/"
    )


@functools.lru_cache(maxsize=64)
def _load_demes(path: str, _mtime_ns: int) -> demes.Graph:
    return demes.load(path).in_generations()


@functools.lru_cache(maxsize=16)
def _load_stdpopsim(scenario: str, species: str, model: str) -> demes.Graph:
    try:
        import stdpopsim
    except ImportError as err:
        raise ConfigError(
            f"scenario {scenario!r}: demography.stdpopsim needs the stdpopsim package "
            "(pip install stdpopsim)"
        ) from err
    try:
        dm = stdpopsim.get_species(species).get_demographic_model(model)
    except (
        ValueError
    ) as err:  # "Species 'X' not in catalog (...)", "DemographicModel ... not in catalog"
        raise ConfigError(f"scenario {scenario!r}: demography.stdpopsim: {err}") from err
    return dm.model.to_demes().in_generations()


def present_at_zero(graph: demes.Graph) -> list[str]:
    """Names of the demes that exist at time 0 (where samples are taken)."""
    return [d.name for d in graph.demes if d.end_time == 0]


def pick_population(graph: demes.Graph, name: str | None, scenario: str, source: str) -> str:
    present = present_at_zero(graph)
    if name is None:
        if len(present) == 1:
            return present[0]
        raise ConfigError(
            f"scenario {scenario!r}: the demography ({source}) has {len(present)} populations at "
            f"time 0 ({', '.join(present)}): name the sampled one with 'population'"
        )
    names = [d.name for d in graph.demes]
    if name not in names:
        raise ConfigError(
            f"scenario {scenario!r}: population {name!r} is not in the demography ({source}); "
            f"populations at time 0: {', '.join(present)}"
        )
    if name not in present:
        raise ConfigError(
            f"scenario {scenario!r}: population {name!r} of the demography ({source}) ends "
            f"{graph[name].end_time:g} generations ago; samples are taken at time 0, from one of: "
            f"{', '.join(present)}"
        )
    return name


def graph_of(demography: dict) -> demes.Graph:
    """The demes graph of a resolved demography (see :func:`resolve`)."""
    return demes.Graph.fromdict(copy.deepcopy(demography["graph"]))


def size_at_zero(graph: demes.Graph, population: str) -> float:
    """Diploid size of a deme at time 0 (the end size of its youngest epoch)."""
    return float(graph[population].epochs[-1].end_size)


def _chain(graph: demes.Graph, population: str) -> list[demes.Deme]:
    """The sampled deme and its single-ancestor predecessors, youngest first."""
    chain = [graph[population]]
    while len(chain[-1].ancestors) == 1:
        anc = graph[chain[-1].ancestors[0]]
        if anc.end_time != chain[-1].start_time:
            break
        chain.append(anc)
    return chain


def single_population(graph: demes.Graph, population: str) -> demes.Graph | None:
    """``graph`` itself when it has one deme; a one-deme equivalent when its demes form a chain ending
    in ``population`` (no overlap, migration or pulse); ``None`` when several populations coexist."""
    if len(graph.demes) == 1:
        return graph
    chain = _chain(graph, population)
    if len(chain) != len(graph.demes) or graph.migrations or graph.pulses:
        return None
    b = demes.Builder(
        description=graph.description,
        time_units="generations",
        generation_time=1,
    )
    epochs = [
        {
            "end_time": e.end_time,
            "start_size": e.start_size,
            "end_size": e.end_size,
            "size_function": e.size_function,
        }
        for deme in reversed(chain)
        for e in deme.epochs
    ]
    b.add_deme(population, epochs=epochs)
    return b.resolve()


def second_population(graph: demes.Graph, population: str) -> tuple[str, float]:
    """(name, time) of the population that, backwards in time, first coexists with the sampled
    lineage's; only for graphs that :func:`single_population` cannot reduce."""
    chain = {d.name for d in _chain(graph, population)}
    others = [d for d in graph.demes if d.name not in chain]
    if not others:  # a chain with migration or pulses between its members cannot happen; be safe
        return population, 0.0
    first = min(others, key=lambda d: d.end_time)
    return first.name, float(first.end_time)


def msprime_demography(demography: dict):
    """(``msprime.Demography``, sampled population name) of a resolved demography."""
    import msprime

    graph = graph_of(demography)
    flat = single_population(graph, demography["population"])
    return msprime.Demography.from_demes(flat or graph), demography["population"]
