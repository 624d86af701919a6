"""The genome-scan part of the workflow (workflow/rules/sweeps/scan.smk): plan, inputs, engines, tables.

``plan(settings, ...)`` checks the ``apps.sweeps.scan`` config section against the rest of the
sweeps' section (``apps.sweeps``) and says
what runs: which inputs and chromosomes (known when the workflow is parsed: listed in the config,
else read cheaply from the VCF header, the ms file or the tree sequence's metadata), which models
scan them (``fp32`` and every compression method that has a packed model for the scenario; int8
methods are left out: their model is the fp32 model's int8 export, which engine ``onnx_int8``
runs), through which engines, and which (scenario, model, engine) triples are evaluated on
simulated replicates.

Chromosomes are converted once per (input, chromosome) to a compact npz (``save_chromosome``:
positions, bit-packed 0/1 haplotypes with missing calls as 0, which is what the scan's encoder
does with them anyway), so the region jobs of a chromosome do not each parse a VCF.

Engines: ``open_engine`` builds one from a model file; a model that cannot run in an engine (a
packed model in ``lut_fp32``, an fp32 model in ``packed``, ``onnx_int8`` for a compressed model,
a compressed model the lookup engine does not support) gives ``(None, reason)`` and the jobs write
NA scores and the reason instead of failing.

Replicate scans (``save_replicate_scans``) hold the per-replicate grid scores of a scenario's test
replicates; they give both ASDEC's metrics (``scan_metrics.evaluate``) and, from the neutral
replicates, the per-window null of the chromosome scans' empirical p-values.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from ...atomic import atomic_path
from ...errors import ConfigError, InputFormatError

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
FP32 = "fp32"
FP32_ENGINES = ("torch_fp32_per_window", "torch_fp32", "onnx_fp32", "onnx_int8", "lut_fp32")
COMPRESSED_ENGINES = ("packed", "packed_torch", "torch_fp32", "onnx_fp32")
INPUT_FORMATS = ("auto", "vcf", "ms", "trees")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# --------------------------------------------------------------------------------------------------
# plan


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


def engines_for_model(engines: dict, model: str) -> list[str]:
    """The engines of ``apps.sweeps.scan.engines`` (fp32, compressed) or
    ``apps.sweeps.scan.localiser.engines``."""
    from .localiser import LOCALISER

    if model == LOCALISER:
        return list(engines["localiser"])
    return list(engines[FP32 if model == FP32 else "compressed"])


def smooth_bp_for(model: str, smooth_bp: float) -> float:
    """Half-width of the log-odds average for ``model``: 0 for the localiser, whose track already
    pools the votes of every window within half a span (``localiser``), else ``smooth_bp``."""
    from .localiser import LOCALISER

    return 0.0 if model == LOCALISER else float(smooth_bp)


def check_name(key: str, name: str) -> None:
    if not _SAFE_NAME.match(str(name)):
        raise ConfigError(
            f"config key {key}: {name!r} cannot be used in file names "
            "(letters, digits, '.', '_' and '-'; starting with a letter or digit)"
        )


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


def read_chromosome(inp: dict, chrom: str):
    """``HaplotypeData`` of one chromosome of an input (``ScanInput`` fields as a dict).

    A chromosome (or region) with no usable SNP, or whose genotype calls are all missing, is an
    ``InputFormatError`` naming the file, the range and the likely cause (``io.check_usable``
    without the window check, which needs the window). A 'chr' prefix that differs between the
    config and a VCF is mapped (``hd.notes`` says so).
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
    elif fmt == "trees":
        (hd,) = io.read_trees(path, chrom=chrom)
    else:
        raise ConfigError(f"unknown input format {fmt!r}")
    _check_snps(hd, str(path))
    return hd


def save_chromosome(
    hd, path: str | os.PathLike, *, base: int = 0, warnings: list[str] | None = None
) -> None:
    """One chromosome as npz: positions, 0/1 haplotypes bit-packed (missing calls as 0), info
    (with the reader's ``warnings``, which the scan's outputs repeat)."""
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
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp,
            positions=hd.positions,
            haplotypes=np.packbits(hd.filled(0), axis=1),
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
    bytes for the whole chromosome plus the region's SNPs unpacked.
    """

    chrom: str
    positions: np.ndarray
    haplotypes: PackedHaplotypes
    length: float | None
    source: str
    sample_names: list
    ploidy: int
    stats: dict

    @property
    def n_sites(self) -> int:
        return self.haplotypes.shape[0]

    @property
    def n_haplotypes(self) -> int:
        return self.haplotypes.shape[1]


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


# --------------------------------------------------------------------------------------------------
# replicates simulated for the scan: the p-value null and the localisation evaluation


def simulate_scan_batch(
    params,
    scenario: str,
    cls: str,
    batch: int,
    size: int,
    master_seed: int,
    *,
    positions: tuple[float, float] = (0.1, 0.9),
    log=None,
) -> list:
    """``size`` replicates (``simulate.Replicate``) of the scan's own simulations.

    Neutral replicates are the p-value null of inputs with ``params.haplotypes`` haplotypes; sweep
    replicates have their sweep at a uniform random position in ``positions`` x L (not the centre
    the training replicates use), so the localisation metrics measure what a scan of real data
    needs. Seeds and positions derive from the master seed, the scenario, the haplotype count,
    the class, the batch and the replicate index.
    """
    import time

    from ...seeds import derive_seed
    from .simulate import Replicate, simulate_tree_sequence

    lo, hi = float(positions[0]), float(positions[1])
    if not 0 <= lo <= hi <= 1:
        raise ConfigError(
            f"config key apps.sweeps.scan.evaluate.positions: {positions} is not in [0, 1]"
        )
    length, haps = params.sequence_length, params.haplotypes
    reps, start = [], time.perf_counter()
    for i in range(size):
        seed = derive_seed(master_seed, "scan_sims", scenario, haps, cls, batch, i)
        where = None
        if cls == "sweep":
            u = np.random.default_rng(derive_seed(seed, "position")).uniform(lo, hi)
            where = float(u * length)
        ts = simulate_tree_sequence(params, cls, seed, scenario, sweep_position=where)
        reps.append(
            Replicate(
                positions=ts.tables.sites.position.copy(),
                haplotypes=ts.genotype_matrix().astype(np.uint8),
                sweep_position=where if where is not None else float("nan"),
            )
        )
        if log is not None and (i + 1) % max(1, size // 5) == 0:
            log.info(
                "%s/%s at %d haplotypes, batch %d: %d/%d replicates (%.1f s)",
                scenario,
                cls,
                haps,
                batch,
                i + 1,
                size,
                time.perf_counter() - start,
            )
    return reps


def load_scan_replicates(paths) -> tuple[list, float]:
    """(replicates in batch order, sequence length) of ``simulate_scan_batch`` shards."""
    from .simulate import load_replicates

    reps, lengths = [], set()
    for path in paths:
        batch, length = load_replicates(path)
        reps.extend(batch)
        lengths.add(length)
    if len(lengths) > 1:
        raise InputFormatError(f"simulation shards disagree on the sequence length: {lengths}")
    return reps, (lengths.pop() if lengths else float("nan"))


# --------------------------------------------------------------------------------------------------
# test replicates of a scenario


def test_batches(n_train: int, n_test: int, batch_size: int, neutral_only: bool) -> list[int]:
    """Simulation batches holding a scenario's test replicates (indices >= n_train per class)."""
    first = 0 if neutral_only else n_train
    last = first + n_test - 1
    return list(range(first // batch_size, last // batch_size + 1))


def load_test_replicates(
    shards: dict[int, str | os.PathLike],
    *,
    first_test: int,
    batch_size: int,
    max_replicates: int | None = None,
):
    """(test replicates in index order, sequence length) from ``{batch: sim shard}``."""
    from .simulate import load_replicates

    reps, lengths = [], set()
    for b in sorted(shards):
        batch, length = load_replicates(shards[b])
        lengths.add(length)
        reps.extend(r for i, r in enumerate(batch) if b * batch_size + i >= first_test)
    if len(lengths) > 1:
        raise InputFormatError(f"simulation shards disagree on the sequence length: {lengths}")
    if max_replicates is not None:
        reps = reps[:max_replicates]
    return reps, (lengths.pop() if lengths else float("nan"))


# --------------------------------------------------------------------------------------------------
# engines


def open_engine(
    kind: str,
    model_path: str | os.PathLike,
    *,
    model: str,
    shape: tuple[int, int],
    batch_size: int = 256,
    threads: int = 1,
    onnx_path: str | os.PathLike | None = None,
    localiser=None,
):
    """(engine, None), or (None, reason) when this model cannot run in engine ``kind``.

    The localiser (model ``localiser.LOCALISER``) opens through ``localiser.open_engine`` with its
    ``LocaliserSettings`` (``localiser``) at ``shape[0]`` haplotypes.

    ``model`` is ``"fp32"`` or a compression method's name. ``onnx_path`` is the fp32 model's ONNX
    export (``rule scan_onnx``): ``onnx_int8`` runs its static int8 version (required), and
    ``onnx_fp32`` runs the fp32 export as is instead of exporting the model again in every job
    (which took about 4 s a job). A corrupt model file still raises.
    """
    from ...runtime import make_engine
    from .localiser import LOCALISER

    if model == LOCALISER:
        from .localiser import open_engine as open_localiser

        if localiser is None:
            raise ConfigError(
                "the localiser's engine needs its settings (apps.sweeps.scan.localiser)"
            )
        return open_localiser(
            kind,
            model_path,
            onnx_path=onnx_path,
            settings=localiser,
            haplotypes=shape[0],
            batch_size=batch_size,
            threads=threads,
        )
    try:
        if kind == "onnx_int8":
            if model != FP32:
                raise ConfigError("onnx_int8 runs the fp32 model's int8 ONNX export only")
            if onnx_path is None:
                raise ConfigError("onnx_int8 needs the int8 ONNX file of the fp32 model")
            model_path = onnx_path
        elif kind == "onnx_fp32" and model == FP32 and onnx_path is not None:
            model_path = onnx_path
        engine = make_engine(
            kind, model_path, batch_size=batch_size, threads=threads, example_shape=shape
        )
    except ConfigError as err:
        return None, f"model {model} cannot run in engine {kind}: {err}"
    except InputFormatError:
        raise
    except Exception as err:  # e.g. the ONNX export of a quantized model
        if kind != "onnx_fp32":
            raise
        return None, f"model {model} cannot run in engine {kind}: {type(err).__name__}: {err}"
    # a first tiny batch catches models the engine accepts but cannot evaluate
    try:
        engine.predict_proba(np.zeros((1, 1, *shape), np.uint8))
    except ConfigError as err:
        return None, f"model {model} cannot run in engine {kind}: {err}"
    return engine, None


# --------------------------------------------------------------------------------------------------
# replicate scans


def save_replicate_scans(path, sweeps, neutrals, length: float, info: dict) -> None:
    """Raw grid scores of scanned test replicates (``scan_metrics.ReplicateTracks`` of the sweep
    and the neutral replicates; either may be None) as one npz."""
    tracks = [t for t in (sweeps, neutrals) if t is not None]
    grid = tracks[0].positions if tracks else np.zeros(0)
    cat = {
        k: np.concatenate([getattr(t, k) for t in tracks]) if tracks else np.zeros((0, 0))
        for k in ("p_sweep", "log_odds", "true_position")
    }
    n_sweep = len(sweeps.true_position) if sweeps is not None else 0
    n_neutral = len(neutrals.true_position) if neutrals is not None else 0
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp,
            positions=np.asarray(grid, np.float64),
            p_sweep=cat["p_sweep"].reshape(n_sweep + n_neutral, len(grid)),
            log_odds=cat["log_odds"].reshape(n_sweep + n_neutral, len(grid)),
            true_position=cat["true_position"].reshape(-1).astype(np.float64),
            label=np.array([1] * n_sweep + [0] * n_neutral, np.int8),
            sequence_length=np.float64(length),
            info=np.array(json.dumps(info)),
        )


def load_replicate_scans(path):
    """(sweep tracks, neutral tracks, sequence length, info) of a ``save_replicate_scans`` file;
    the tracks are ``scan_metrics.ReplicateTracks`` (``.scans(statistic, smooth_bp)`` gives the
    ``ReplicateScan`` list that ``scan_metrics.evaluate`` takes)."""
    from .scan_metrics import ReplicateTracks

    keys = ("positions", "p_sweep", "log_odds", "true_position", "label", "sequence_length", "info")
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in keys}
    except Exception as err:
        raise InputFormatError(f"{path}: unreadable replicate scan file ({err})") from err
    shape = (len(d["label"]), len(d["positions"]))
    for k in ("p_sweep", "log_odds"):
        if d[k].shape != shape:
            raise InputFormatError(f"{path}: field {k!r} has shape {d[k].shape}, not {shape}")
    out = []
    for lab in (1, 0):
        rows = d["label"] == lab
        out.append(
            ReplicateTracks(
                d["positions"], d["p_sweep"][rows], d["log_odds"][rows], d["true_position"][rows]
            )
        )
    return out[0], out[1], float(d["sequence_length"]), json.loads(str(d["info"]))


def load_classic_scores(path) -> dict:
    """Classic statistics of a ``scan_classic.py`` file: ``{"scans": {statistic: (sweep scans,
    neutral scans)}, "positions", "length", "info"}`` (``scan_metrics.ReplicateScan`` lists)."""
    from .scan_metrics import ReplicateScan

    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        info = json.loads(str(d["info"]))
        stats = list(info["statistics"])
        grid, label, true = d["positions"], d["label"], d["true_position"]
        arrays = {s: d[f"score_{s}"] for s in stats}
    except Exception as err:
        raise InputFormatError(f"{path}: unreadable classic score file ({err})") from err
    scans = {}
    for s, a in arrays.items():
        if a.shape != (len(label), len(grid)):
            raise InputFormatError(f"{path}: field 'score_{s}' has shape {a.shape}")
        reps = [ReplicateScan(grid, row, float(t)) for row, t in zip(a, true, strict=True)]
        scans[s] = (
            [r for r, lab in zip(reps, label, strict=True) if lab == 1],
            [r for r, lab in zip(reps, label, strict=True) if lab == 0],
        )
    return {"scans": scans, "positions": grid, "length": float(d["sequence_length"]), "info": info}


def combine_scans(classic_scans: list, cnn_scans: list) -> list:
    """Replicate-wise product of a classic statistic and the CNN's P(sweep) on the same grid
    (RAiSD-AI reports mu x P(sweep)); the replicates must be the same, in the same order."""
    from .scan_metrics import ReplicateScan

    if len(classic_scans) != len(cnn_scans):
        raise InputFormatError(
            f"classic and CNN scans hold {len(classic_scans)} and {len(cnn_scans)} replicates"
        )
    out = []
    for a, b in zip(classic_scans, cnn_scans, strict=True):
        same = np.array_equal(a.positions, b.positions)
        if not same or not (a.true_position == b.true_position or np.isnan(a.true_position)):
            raise InputFormatError("classic and CNN scans are not of the same replicates and grid")
        out.append(ReplicateScan(b.positions, a.scores * b.scores, b.true_position))
    return out


def neutral_null(path, statistic: str = "log_odds_smoothed", smooth_bp: float = 0.0):
    """Per-window finite ``statistic`` of the neutral replicates of a replicate scan file."""
    _, neutrals, _, _ = load_replicate_scans(path)
    scans = neutrals.scans(statistic, smooth_bp)
    if not scans:
        return np.zeros(0)
    s = np.concatenate([n.scores for n in scans])
    return s[np.isfinite(s)]


def score_threshold(null: np.ndarray, p_threshold: float) -> float:
    """Smallest P(sweep) level whose empirical p-value can reach ``p_threshold``.

    ``p = (1 + #{null >= s}) / (1 + n) <= t`` needs ``#{null >= s} <= k = floor(t (1 + n) - 1)``,
    i.e. ``s`` above the (k + 1)-th largest null score; NaN when no score can reach it.
    """
    null = np.sort(np.asarray(null, np.float64)[np.isfinite(null)])
    n = null.size
    k = math.floor(p_threshold * (1 + n) - 1 + 1e-12)
    if n == 0 or k < 0:
        return float("nan")
    if k >= n:
        return float("-inf")
    return float(null[n - 1 - k])


# --------------------------------------------------------------------------------------------------
# per-chromosome outputs


def merge_chromosome(
    tables: list,
    null: np.ndarray,
    *,
    peaks: dict,
    base: int,
    out: dict,
    statistic: str = "log_odds_smoothed",
    smooth_bp: float = 0.0,
    header: list[str] | None = None,
    truth=None,
    title: str = "",
) -> dict:
    """Merge region tables, add the ranking score, p- and q-values and ranks, call peaks; write
    ``out`` (tsv, bedgraph, bed, png).

    ``null``: per-window neutral scores of the same ``statistic``; ``peaks``: the ``apps.sweeps.scan.peaks``
    config; ``header``: comment lines of the TSV; ``truth``: a truth table
    (``chromosome.read_truth``) whose sweeps and hotspots are marked on the PNG. Returns counts
    and the saturation check for the job's log and JSON.
    """
    from . import scan

    table = scan.add_score(scan.merge_scores(tables), statistic, smooth_bp)
    null = np.asarray(null, np.float64)
    if null.size and np.isfinite(null).any():
        table = scan.add_pvalues(table, null)
    else:
        table = table.assign(p_value=np.nan, q_value=np.nan)
    table["rank"] = scan.score_ranks(table["score"].to_numpy(np.float64))
    table["rank"] = table["rank"].astype("Int64")
    column, thr = peaks["column"], float(peaks["threshold"])
    called = scan.call_peaks(table, thr, column=column, max_gap=int(peaks["max_gap"]))
    called = called[called["n_points"] >= int(peaks["min_points"])].reset_index(drop=True)
    sat = scan.saturation(table, int(null.size))
    lines = list(header or [])
    if sat["warning"]:
        lines.append(f"warning: {sat['warning']}")
    scan.write_scores_tsv(table, out["tsv"], header=lines)
    scan.write_bedgraph(table, out["bedgraph"], base=base)
    scan.write_peaks_bed(called, out["bed"], base=base)
    sweeps, hotspots = None, None
    if truth is not None:
        sweeps = truth.loc[truth["class"] == "sweep", "sweep_position"].to_numpy(np.float64)
        hot = truth.dropna(subset=["hotspot_start"])
        hotspots = list(zip(hot["hotspot_start"], hot["hotspot_end"], strict=True))
    scan.plot_scan(
        table,
        out["png"],
        truth=sweeps,
        peaks=called,
        threshold=thr if column == "p_sweep" else None,
        p_threshold=thr if column == "p_value" else None,
        hotspots=hotspots,
        title=title or None,
    )
    scored = int(np.isfinite(table["score"].to_numpy(np.float64)).sum())
    return {
        "grid_points": len(table),
        "scored_points": scored,
        "peaks": len(called),
        "null_windows": int(null.size),
        "min_p_value": float(np.nanmin(table["p_value"])) if scored and null.size else None,
        "saturation": sat,
    }


# --------------------------------------------------------------------------------------------------
# evaluation table

SUMMARY_COLUMNS = (
    "scenario",
    "method",
    "engine",
    "data",
    "statistic",
    "input_haplotypes",
    "model_haplotypes",
    "sample_size",
    "success_rate",
    "distance_error_pct",
    "sensitivity_at_fpr",
    "fpr",
    "fpr_threshold",
    "observed_fpr",
    "n_sweep",
    "n_neutral",
    "grid_points",
    "null_windows",
    "windows",
    "seconds",
    "windows_per_s",
    "note",
)


def summary_row(
    scenario: str,
    method: str,
    engine: str,
    data: str,
    metrics: dict | None,
    info: dict,
    *,
    statistic: str = "",
) -> dict:
    """One row of scan_summary.tsv (NaN metrics and the reason when the engine was skipped).

    ``info``: the scan's JSON (replicate scans: ``scan_replicates.py``; chromosomes:
    ``scan_merge.py``); its ``sample_size``, ``null_windows``, ``skipped`` and ``warnings`` fill
    the sample-size and note columns.
    """
    row = dict.fromkeys(SUMMARY_COLUMNS, float("nan"))
    row.update(scenario=scenario, method=method, engine=engine, data=data, statistic=statistic)
    if metrics:
        row.update({k: v for k, v in metrics.items() if k in SUMMARY_COLUMNS})
    seconds = info.get("seconds")
    windows = info.get("windows")
    size = info.get("sample_size") or {}
    notes = [info["skipped"]] if info.get("skipped") else []
    notes += list(info.get("warnings") or [])
    row.update(
        input_haplotypes=size.get("input_haplotypes", float("nan")),
        model_haplotypes=size.get("model_haplotypes", float("nan")),
        sample_size=size.get("action", ""),
        grid_points=info.get("grid_points", float("nan")),
        null_windows=info.get("null_windows", float("nan")),
        windows=windows if windows is not None else float("nan"),
        seconds=seconds if seconds is not None else float("nan"),
        windows_per_s=(windows / seconds) if windows and seconds else float("nan"),
        note="; ".join(notes),
    )
    return row


def write_summary(rows: list[dict], path) -> None:
    import pandas as pd

    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="NA", float_format="%.6g")


__all__ = [
    "COMPRESSED_ENGINES",
    "FP32",
    "FP32_ENGINES",
    "RESERVED",
    "SIMULATED",
    "SUMMARY_COLUMNS",
    "PackedChromosome",
    "PackedHaplotypes",
    "ScanInput",
    "ScanPlan",
    "chromosome_kwargs",
    "combine_scans",
    "input_chroms",
    "load_chromosome",
    "load_classic_scores",
    "load_replicate_scans",
    "load_scan_replicates",
    "load_test_replicates",
    "matched_scenarios",
    "merge_chromosome",
    "neutral_null",
    "open_engine",
    "plan",
    "read_chromosome",
    "save_chromosome",
    "save_replicate_scans",
    "simulate_scan_batch",
    "score_threshold",
    "summary_row",
    "test_batches",
    "user_input",
    "write_summary",
]
