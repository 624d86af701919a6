"""The genome scan's plan (workflow/rules/sweeps/scan.smk): what runs, checked against the config.

``plan(settings, ...)`` checks the ``apps.sweeps.scan`` config section against the rest of the
sweeps' section (``apps.sweeps``) and says
what runs: which inputs and chromosomes (known when the workflow is parsed: listed in the config,
else read cheaply from the VCF header, the ms file or the tree sequence's metadata; ``scan_inputs``),
which models scan them (``fp32`` and every compression method that has a packed model for the
scenario; int8 methods are left out: their model is the fp32 model's int8 export, which engine
``onnx_int8`` runs), through which engines (``scan_engines``), and which (scenario, model, engine)
triples are evaluated on simulated replicates.

``matched_scenarios`` adds the scenarios that ``apps.sweeps.scan.sample_size.policy: match``
needs; ``chromosome_kwargs`` checks a simulated chromosome of ``apps.sweeps.scan.simulated``.
"""

from __future__ import annotations

import dataclasses

from ...errors import ConfigError
from .scan_engines import COMPRESSED_ENGINES, FP32, FP32_ENGINES, engines_for_model
from .scan_inputs import ScanInput, check_name, input_format, input_haplotypes, user_input

SIMULATED = "simulated"
"""Input name of the simulated test chromosome(s)."""
RESERVED = (
    SIMULATED,
    "sim",
    "sims",
    "data",
    "regions",
    "replicates",
    "int8",
    "onnx",
    "classic",
    "evaluate",
)
"""Names user inputs cannot take (directories under results/sweeps/scan/)."""


@dataclasses.dataclass
class ScanPlan:
    window: int
    inputs: dict[str, ScanInput]
    models: dict[str, list[str]]  # scenario -> model names (fp32 first, the localiser last)
    engines: dict[str, list[str]]  # "fp32" / "compressed" / "localiser" -> engine kinds
    evaluate: list[tuple[str, str, str]]  # (scenario, model, engine)
    simulated: dict  # chromosome name -> ChromosomeSpec keyword arguments
    model_haplotypes: dict[str, int] = dataclasses.field(default_factory=dict)  # scenario -> rows

    def engines_for(self, model: str) -> list[str]:
        return engines_for_model(self.engines, model)

    def scans(self) -> list[tuple[str, str, str, str]]:
        """(input, chrom, model, engine) of every per-chromosome scan."""
        out = []
        for inp in self.inputs.values():
            for model in self.models[inp.scenario]:
                for engine in self.engines_for(model):
                    out.extend((inp.name, chrom, model, engine) for chrom in inp.chroms)
        return out

    def replicate_scans(self) -> list[tuple[str, str, str, str, int]]:
        """(model scenario, model, engine, simulated scenario, haplotypes) of every replicate
        scan needed: the evaluations (the model's own size) and every input's p-value null
        (the input's size, under its null scenario)."""
        need = {(s, m, e, s, self.model_haplotypes[s]) for s, m, e in self.evaluate}
        for inp in self.inputs.values():
            for model in self.models[inp.scenario]:
                for engine in self.engines_for(model):
                    need.add((inp.scenario, model, engine, inp.null_scenario, inp.haplotypes))
        return sorted(need)

    def simulation_sets(self) -> dict[tuple[str, int], tuple[str, ...]]:
        """``{(scenario, haplotypes): classes}`` of the replicates the scan simulates: neutral
        ones for every null, sweeps (at random positions) where a scenario is evaluated."""
        sets: dict[tuple[str, int], set] = {}
        for _, _, _, sims, haps in self.replicate_scans():
            sets.setdefault((sims, haps), {"neutral"})
        for s, _, _ in self.evaluate:
            sets[(s, self.model_haplotypes[s])].add("sweep")
        return {k: tuple(c for c in ("neutral", "sweep") if c in v) for k, v in sets.items()}


def plan(
    settings: dict,
    *,
    trained: list[str],
    compress_jobs: list[tuple[str, str]],
    read_headers: bool = True,
) -> ScanPlan:  # noqa: C901 - one check after another
    """Check ``settings["scan"]`` against the rest of the sweeps' section ``settings``
    (``apps.sweeps``: its ``data`` and ``compress``); say what the scan rules run.

    ``trained``: scenarios with an fp32 model; ``compress_jobs``: (scenario, method) pairs of the
    compression fan-out (those of int8-type methods, which have no packed model, are left out).
    ``read_headers=False`` skips reading input files for chromosome names (tests).
    """
    sc, sw = settings["scan"], settings["data"]
    methods = (settings.get("compress") or {}).get("methods", {})
    if not trained:
        raise ConfigError(
            "config key apps.sweeps.data.scenarios: the scan needs a trained sweep scenario"
        )
    snps = sw["image"]["snps"]
    window = sc["window"] if sc["window"] is not None else snps
    if window != snps:
        raise ConfigError(
            f"config key apps.sweeps.scan.window: {window} SNPs per window, but the models are "
            f"trained on apps.sweeps.data.image.snps = {snps}; windows must be encoded exactly as "
            "in training (set apps.sweeps.scan.window to null or to apps.sweeps.data.image.snps)"
        )

    def check_scenario(key: str, name: str | None) -> str:
        if name is None:
            return trained[0]
        if name not in trained:
            raise ConfigError(
                f"config key {key}: {name!r} is not a trained sweep scenario "
                f"(trained: {', '.join(trained)})"
            )
        return name

    # int8-type methods (ONNX Runtime, model.onnx) are not scanned as compressed models: their model
    # is the fp32 model's static int8 export, which the scan runs as fp32 with engine onnx_int8
    int8 = {n for n, m in methods.items() if (m or {}).get("type") == "int8"}
    bad = [m for m in sc["models"] if m in int8]
    if bad:
        raise ConfigError(
            f"config key apps.sweeps.scan.models: {bad} are int8 methods (ONNX Runtime models, "
            "no packed model to scan); their model is the fp32 model's static int8 export, which "
            "the scan runs as model fp32 with engine onnx_int8 (apps.sweeps.scan.engines.fp32)"
        )
    compressed: dict[str, list[str]] = {}
    for scenario, method in compress_jobs:
        if method not in int8:
            compressed.setdefault(scenario, []).append(method)
    from .localiser import ENGINES as LOCALISER_ENGINES
    from .localiser import LOCALISER, LocaliserSettings

    loc = sc.get("localiser") or {"enabled": False}
    if loc["enabled"]:
        LocaliserSettings.from_config(loc)  # named errors before any job
    wanted = list(sc["models"])
    known = (
        {FP32}
        | {m for _, m in compress_jobs}
        | set(methods)
        | ({LOCALISER} if loc["enabled"] else set())
    )
    bad = [m for m in wanted if m not in known]
    if bad:
        raise ConfigError(
            f"config key apps.sweeps.scan.models: unknown model(s) {bad}; known: fp32 and the "
            f"methods of apps.sweeps.compress.methods "
            f"({', '.join(sorted(known - {FP32})) or 'none'})"
        )
    models = {}
    for scenario in trained:
        names = [FP32, *compressed.get(scenario, [])] + ([LOCALISER] if loc["enabled"] else [])
        models[scenario] = [m for m in names if not wanted or m in wanted]
    engines = {
        "fp32": list(sc["engines"]["fp32"]),
        "compressed": list(sc["engines"]["compressed"]),
        "localiser": list(loc.get("engines", [])),
    }
    for key, allowed, where in (
        ("fp32", FP32_ENGINES, "apps.sweeps.scan.engines.fp32"),
        ("compressed", COMPRESSED_ENGINES, "apps.sweeps.scan.engines.compressed"),
        ("localiser", LOCALISER_ENGINES, "apps.sweeps.scan.localiser.engines"),
    ):
        bad = [e for e in engines[key] if e not in allowed]
        if bad:
            raise ConfigError(
                f"config key {where}: {bad} cannot run {key} models; "
                f"choose from {', '.join(allowed)}"
            )

    ev = sc["evaluate"]
    # scenarios with a sweep class (island scenarios are neutral only: never trained)
    from .settings import is_neutral_only

    defined = {n for n in sw.get("scenarios", {}) if not is_neutral_only(sw, n)}
    defined |= set(trained)
    unknown = [n for n in ev["scenarios"] if n not in defined]
    if unknown:
        raise ConfigError(
            f"config key apps.sweeps.scan.evaluate.scenarios: {unknown} are not trainable sweep "
            "scenarios "
            f"(those with a sweep class: {', '.join(sorted(defined))})"
        )
    # listed scenarios that this run does not train (apps.sweeps.data.run) are left out; none
    # left: all
    ev_scenarios = [n for n in ev["scenarios"] if n in trained] or list(trained)
    evaluate = [
        (s, m, e) for s in ev_scenarios for m in models[s] for e in engines_for_model(engines, m)
    ]

    inputs: dict[str, ScanInput] = {}
    simulated = {}
    sim = sc["simulated"]
    if sim["names"]:
        demography = check_scenario("apps.sweeps.scan.simulated.scenario", sim["scenario"])
        model_scenario = check_scenario(
            "apps.sweeps.scan.simulated.model", sim["model"] or demography
        )
        for name in sim["names"]:
            check_name("apps.sweeps.scan.simulated.names", name)
            simulated[name] = chromosome_kwargs(sim, sw, name, demography)
        sim_haps = int(next(iter(simulated.values()))["haplotypes"])
        if len(set(sim["names"])) != len(sim["names"]):
            raise ConfigError("config key apps.sweeps.scan.simulated.names: names must be distinct")
        inputs[SIMULATED] = ScanInput(
            name=SIMULATED,
            format="trees",
            path=None,
            chroms=list(sim["names"]),
            scenario=model_scenario,
            null_scenario=demography,
            truth=True,
            haplotypes=sim_haps,
        )
    for k, item in enumerate(sc["inputs"]):
        key = f"apps.sweeps.scan.inputs[{k}]"
        name = item["name"]
        check_name(f"{key}.name", name)
        if name in RESERVED:
            raise ConfigError(
                f"config key {key}.name: {name!r} is reserved ({', '.join(RESERVED)})"
            )
        if name in inputs:
            raise ConfigError(f"config key {key}.name: input {name!r} is listed twice")
        scenario = check_scenario(f"{key}.scenario", item.get("scenario"))
        inp = user_input(item, key, scenario, read_headers=read_headers)
        inputs[name] = inp
    from .sample_size import resolve
    from .simulate import SimParams

    model_haps = {s: SimParams.from_config(sw, s).haplotypes for s in trained}
    size_cfg = sc["sample_size"]
    for name, inp in inputs.items():
        where = (
            "apps.sweeps.scan.simulated"
            if name == SIMULATED
            else f"apps.sweeps.scan.inputs {name!r}"
        )
        size = resolve(
            inp.haplotypes,
            model_haps[inp.scenario],
            policy=size_cfg["policy"],
            subsets=size_cfg["subsets"],
            source=f"{where} ({inp.path or 'simulated'})",
        )
        inp.sample_size = size.as_dict()
    return ScanPlan(window, inputs, models, engines, evaluate, simulated, model_haps)


def matched_scenarios(settings: dict, *, read_headers: bool = True) -> dict:
    """The sweeps' section ``settings`` (``apps.sweeps``) with the scenarios that
    ``apps.sweeps.scan.sample_size.policy: match`` needs.

    For each scan input whose haplotype count ``n`` differs from its scenario's model size, a
    scenario ``<scenario>_h<m>`` (a copy of the scenario with ``haplotypes: m``) joins
    ``apps.sweeps.data.scenarios`` and ``apps.sweeps.data.run``, and the input is scanned by its
    models; ``m`` is ``n``, or the largest of ``apps.sweeps.scan.sample_size.sizes`` not above
    ``n`` (the input is then subsampled to it). The new scenario is simulated, trained, compressed
    (by the methods that run on every scenario) and calibrated like any other. Other policies
    return ``settings`` itself, unchanged.
    """
    import copy

    sc, sw = settings["scan"], settings["data"]
    size_cfg = sc["sample_size"]
    if size_cfg["policy"] != "match":
        return settings
    from .settings import active_scenarios
    from .simulate import SimParams

    out = copy.deepcopy(settings)
    osw, osc = out["data"], out["scan"]
    trained = [n for n in active_scenarios(sw) if n in sw["scenarios"]]

    def target(n: int, key: str) -> int:
        sizes = sorted(size_cfg["sizes"])
        if not sizes:
            return n
        fit = [s for s in sizes if s <= n]
        if not fit:
            raise ConfigError(
                f"{key}: {n} haplotypes, fewer than every size of "
                "apps.sweeps.scan.sample_size.sizes "
                f"({', '.join(map(str, sizes))})"
            )
        return fit[-1]

    def matched(scenario: str, n: int, key: str) -> str:
        m = target(n, key)
        if m % 2:
            raise ConfigError(f"{key}: a matched model needs an even haplotype count, got {m}")
        if SimParams.from_config(sw, scenario).haplotypes == m:
            return scenario
        name = f"{scenario}_h{m}"
        if name not in osw["scenarios"]:
            spec = copy.deepcopy(sw["scenarios"][scenario] or {})
            spec["haplotypes"] = m
            osw["scenarios"][name] = spec
            if osw["run"]:
                osw["run"] = [*osw["run"], name]
        return name

    sim = sc["simulated"]
    if sim["names"] and sim["haplotypes"] is not None:
        model = sim["model"] or sim["scenario"] or (trained[0] if trained else None)
        if model is not None and model in sw["scenarios"]:
            osc["simulated"]["model"] = matched(
                model, int(sim["haplotypes"]), "apps.sweeps.scan.simulated.haplotypes"
            )
    for k, item in enumerate(sc["inputs"]):
        key = f"apps.sweeps.scan.inputs[{k}]"
        n = item.get("haplotypes")
        if n is None:
            fmt = input_format(item, key, read_headers=read_headers)
            n = input_haplotypes(item, key, fmt, read_headers=read_headers)
            osc["inputs"][k]["haplotypes"] = n  # read once: plan() takes it from here
        scenario = item.get("scenario") or (trained[0] if trained else None)
        if scenario is not None and scenario in sw["scenarios"]:
            osc["inputs"][k]["scenario"] = matched(scenario, int(n), key)
    return out


def smooth_bp_for(model: str, smooth_bp: float) -> float:
    """Half-width of the log-odds average for ``model``: 0 for the localiser, whose track already
    pools the votes of every window within half a span (``localiser``), else ``smooth_bp``."""
    from .localiser import LOCALISER

    return 0.0 if model == LOCALISER else float(smooth_bp)


def statistic_for(model: str, scan_cfg: dict) -> str:
    """Ranking statistic of ``model``'s scans: ``apps.sweeps.scan.localiser.statistic`` for the
    localiser (P(sweep), its votes' mean probability, by default: it does not saturate, since each
    window votes for one 1 kb bin), else ``apps.sweeps.scan.statistic``."""
    from .localiser import LOCALISER

    if model == LOCALISER:
        return scan_cfg.get("localiser", {}).get("statistic", "p_sweep")
    return scan_cfg["statistic"]


def chromosome_kwargs(sim: dict, sweeps_cfg: dict, name: str, scenario: str) -> dict:
    """``ChromosomeSpec`` keyword arguments of a simulated chromosome (checked)."""
    from .chromosome import ChromosomeSpec
    from .simulate import SimParams

    if sim["haplotypes"] is not None and sim["haplotypes"] % 2:
        raise ConfigError(
            f"config key apps.sweeps.scan.simulated.haplotypes: {sim['haplotypes']} is odd "
            "(diploid samples)"
        )
    seg = sim["segment_length"]
    if seg is None:
        seg = SimParams.from_config(sweeps_cfg, scenario).sequence_length
    n = sim["length"] / seg
    if n < 1 or abs(n - round(n)) > 1e-9:
        raise ConfigError(
            f"config key apps.sweeps.scan.simulated.length: {sim['length']} is not a whole "
            f"number of segments of {seg:g} bp (apps.sweeps.scan.simulated.segment_length)"
        )
    kwargs = {
        "name": name,
        "n_segments": int(round(n)),
        "segment_length": float(seg),
        "sweep_segments": list(sim["sweep_segments"]),
        "hotspot_segments": list(sim["hotspot_segments"]),
        "hotspot": dict(sim["hotspot"]),
        "sweep_fraction": float(sim["sweep_fraction"]),
        "scenario": scenario,
        "haplotypes": int(
            sim["haplotypes"]
            if sim["haplotypes"] is not None
            else SimParams.from_config(sweeps_cfg, scenario).haplotypes
        ),
    }
    try:
        ChromosomeSpec(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"config key apps.sweeps.scan.simulated: {err}") from None
    return kwargs


__all__ = [
    "RESERVED",
    "SIMULATED",
    "ScanPlan",
    "chromosome_kwargs",
    "matched_scenarios",
    "plan",
    "smooth_bp_for",
]
