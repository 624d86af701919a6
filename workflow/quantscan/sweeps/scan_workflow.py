"""The genome-scan part of the workflow (workflow/rules/scan.smk): plan, inputs, engines, tables.

``plan(config, ...)`` checks the ``scan`` config section against the rest of the config and says
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

from ..atomic import atomic_path
from ..errors import ConfigError, InputFormatError

SIMULATED = "simulated"
"""Input name of the simulated test chromosome(s)."""
RESERVED = (SIMULATED, "sim", "data", "regions", "replicates", "int8", "evaluate")
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

    @property
    def base(self) -> int:
        """Coordinate base of the input's positions (VCF/BCF 1, ms and tree sequences 0)."""
        return 1 if self.format in ("vcf", "bcf") else 0


@dataclasses.dataclass
class ScanPlan:
    window: int
    inputs: dict[str, ScanInput]
    models: dict[str, list[str]]  # scenario -> model names (fp32 first)
    engines: dict[str, list[str]]  # "fp32" / "compressed" -> engine kinds
    evaluate: list[tuple[str, str, str]]  # (scenario, model, engine)
    simulated: dict  # chromosome name -> ChromosomeSpec keyword arguments

    def engines_for(self, model: str) -> list[str]:
        return list(self.engines[FP32 if model == FP32 else "compressed"])

    def scans(self) -> list[tuple[str, str, str, str]]:
        """(input, chrom, model, engine) of every per-chromosome scan."""
        out = []
        for inp in self.inputs.values():
            for model in self.models[inp.scenario]:
                for engine in self.engines_for(model):
                    out.extend((inp.name, chrom, model, engine) for chrom in inp.chroms)
        return out

    def replicate_scans(self) -> list[tuple[str, str, str, str]]:
        """(model scenario, model, engine, simulated scenario) of every replicate scan needed."""
        need = {(s, m, e, s) for s, m, e in self.evaluate}
        for inp in self.inputs.values():
            for model in self.models[inp.scenario]:
                for engine in self.engines_for(model):
                    need.add((inp.scenario, model, engine, inp.null_scenario))
        return sorted(need)


def plan(
    config: dict,
    *,
    trained: list[str],
    compress_jobs: list[tuple[str, str]],
    read_headers: bool = True,
) -> ScanPlan:
    """Check ``config["scan"]`` against the rest of the config; say what the scan rules run.

    ``trained``: scenarios with an fp32 model; ``compress_jobs``: (scenario, method) pairs of the
    compression fan-out (those of int8-type methods, which have no packed model, are left out).
    ``read_headers=False`` skips reading input files for chromosome names (tests).
    """
    sc, sw = config["scan"], config["sweeps"]
    if not trained:
        raise ConfigError("config key sweeps.scenarios: the scan needs a trained sweep scenario")
    snps = sw["image"]["snps"]
    window = sc["window"] if sc["window"] is not None else snps
    if window != snps:
        raise ConfigError(
            f"config key scan.window: {window} SNPs per window, but the models are trained on "
            f"sweeps.image.snps = {snps}; windows must be encoded exactly as in training "
            "(set scan.window to null or to sweeps.image.snps)"
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
    int8 = {
        n
        for n, m in config.get("compress", {}).get("methods", {}).items()
        if (m or {}).get("type") == "int8"
    }
    bad = [m for m in sc["models"] if m in int8]
    if bad:
        raise ConfigError(
            f"config key scan.models: {bad} are int8 methods (ONNX Runtime models, no packed "
            "model to scan); their model is the fp32 model's static int8 export, which the scan "
            "runs as model fp32 with engine onnx_int8 (scan.engines.fp32)"
        )
    compressed: dict[str, list[str]] = {}
    for scenario, method in compress_jobs:
        if method not in int8:
            compressed.setdefault(scenario, []).append(method)
    wanted = list(sc["models"])
    known = (
        {FP32} | {m for _, m in compress_jobs} | set(config.get("compress", {}).get("methods", {}))
    )
    bad = [m for m in wanted if m not in known]
    if bad:
        raise ConfigError(
            f"config key scan.models: unknown model(s) {bad}; known: fp32 and the methods of "
            f"compress.methods ({', '.join(sorted(known - {FP32})) or 'none'})"
        )
    models = {}
    for scenario in trained:
        names = [FP32, *compressed.get(scenario, [])]
        models[scenario] = [m for m in names if not wanted or m in wanted]
    engines = {"fp32": list(sc["engines"]["fp32"]), "compressed": list(sc["engines"]["compressed"])}
    for key, allowed in (("fp32", FP32_ENGINES), ("compressed", COMPRESSED_ENGINES)):
        bad = [e for e in engines[key] if e not in allowed]
        if bad:
            raise ConfigError(
                f"config key scan.engines.{key}: {bad} cannot run {key} models; "
                f"choose from {', '.join(allowed)}"
            )

    ev = sc["evaluate"]
    # scenarios with a sweep class (island scenarios are neutral only: never trained)
    defined = {n for n, v in sw.get("scenarios", {}).items() if not (v or {}).get("island")}
    defined |= set(trained)
    unknown = [n for n in ev["scenarios"] if n not in defined]
    if unknown:
        raise ConfigError(
            f"config key scan.evaluate.scenarios: {unknown} are not trainable sweep scenarios "
            f"(those with a sweep class: {', '.join(sorted(defined))})"
        )
    # listed scenarios that this run does not train (sweeps.run) are left out; none left: all
    ev_scenarios = [n for n in ev["scenarios"] if n in trained] or list(trained)
    evaluate = [
        (s, m, e) for s in ev_scenarios for m in models[s] for e in engines_for_model(engines, m)
    ]

    inputs: dict[str, ScanInput] = {}
    simulated = {}
    sim = sc["simulated"]
    if sim["names"]:
        demography = check_scenario("scan.simulated.scenario", sim["scenario"])
        model_scenario = check_scenario("scan.simulated.model", sim["model"] or demography)
        for name in sim["names"]:
            check_name("scan.simulated.names", name)
            simulated[name] = chromosome_kwargs(sim, sw, name, demography)
        if len(set(sim["names"])) != len(sim["names"]):
            raise ConfigError("config key scan.simulated.names: names must be distinct")
        inputs[SIMULATED] = ScanInput(
            name=SIMULATED,
            format="trees",
            path=None,
            chroms=list(sim["names"]),
            scenario=model_scenario,
            null_scenario=demography,
            truth=True,
        )
    for k, item in enumerate(sc["inputs"]):
        key = f"scan.inputs[{k}]"
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
    return ScanPlan(window, inputs, models, engines, evaluate, simulated)


def engines_for_model(engines: dict, model: str) -> list[str]:
    return list(engines[FP32 if model == FP32 else "compressed"])


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

    if sim["haplotypes"] is not None and sim["haplotypes"] != sweeps_cfg["haplotypes"]:
        raise ConfigError(
            f"config key scan.simulated.haplotypes: {sim['haplotypes']} haplotypes, but the "
            f"models are trained on sweeps.haplotypes = {sweeps_cfg['haplotypes']} image rows "
            "(set it to null)"
        )
    seg = sim["segment_length"]
    if seg is None:
        seg = SimParams.from_config(sweeps_cfg, scenario).sequence_length
    n = sim["length"] / seg
    if n < 1 or abs(n - round(n)) > 1e-9:
        raise ConfigError(
            f"config key scan.simulated.length: {sim['length']} is not a whole number of "
            f"segments of {seg:g} bp (scan.simulated.segment_length)"
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
        "haplotypes": int(sweeps_cfg["haplotypes"]),
    }
    try:
        ChromosomeSpec(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"config key scan.simulated: {err}") from None
    return kwargs


def user_input(item: dict, key: str, scenario: str, *, read_headers: bool = True) -> ScanInput:
    """A user input of ``scan.inputs``: format and chromosome names resolved (see ``input_chroms``)."""
    from .io import detect_format

    path = item["path"]
    fmt = item.get("format") or "auto"
    if fmt == "auto":
        if not read_headers:
            raise ConfigError(f"config key {key}.format: give the format")
        if not Path(path).exists():
            raise ConfigError(f"config key {key}.path: {path} does not exist")
        fmt = detect_format(path)
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
        from .io import _parse_region

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
    return ScanInput(item["name"], fmt, str(path), chroms, scenario, scenario, options)


def input_chroms(path: str | os.PathLike, fmt: str) -> list[str]:
    """Chromosome names of an input file, read cheaply when the workflow is parsed.

    VCF: the ``##contig`` lines of the header (no records are read; BCF through pysam); ms: ``rep1..repN`` from the
    number of ``//`` lines; tree sequence: its metadata name or file stem (``io.read_trees``).
    """
    from . import io

    path = Path(path)
    if fmt == "vcf":
        contigs = []
        fh = io._open_binary(path)
        with fh:
            for raw in fh:
                line = raw.decode("utf-8", errors="replace").strip()
                if line.startswith("##contig=<"):
                    m = re.search(r"[<,]ID=([^,>]+)", line)
                    if m:
                        contigs.append(m.group(1))
                elif not line.startswith("##"):
                    break
        if not contigs:
            raise ConfigError(
                f"{path}: the VCF header has no ##contig lines; list the chromosomes to scan in "
                "the input's 'chroms'"
            )
        return contigs
    if fmt == "bcf":
        try:
            import pysam
        except ImportError:
            raise io._bcf_error(path) from None
        verbosity = pysam.set_verbosity(0)
        try:
            with pysam.VariantFile(str(path)) as bcf:
                contigs = list(bcf.header.contigs)
        except (OSError, ValueError) as e:
            raise InputFormatError(f"{path}: not a readable BCF header: {e}") from e
        finally:
            pysam.set_verbosity(verbosity)
        if not contigs:
            raise ConfigError(
                f"{path}: the BCF header has no contig lines; list the chromosomes to scan in "
                "the input's 'chroms'"
            )
        return contigs
    if fmt == "ms":
        n = 0
        with io._open_binary(path) as fh:
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
        return [io._ts_chrom(ts, path)]
    raise ConfigError(f"{path}: unknown input format {fmt!r}")


# --------------------------------------------------------------------------------------------------
# inputs: read once, store compactly


def read_chromosome(inp: dict, chrom: str):
    """``HaplotypeData`` of one chromosome of an input (``ScanInput`` fields as a dict)."""
    from . import io

    fmt, path, opt = inp["format"], inp["path"], inp.get("options", {})
    if fmt in ("vcf", "bcf"):
        region = opt.get("region") or chrom
        (hd,) = io.read_vcf(
            path, region=region, samples=opt.get("samples"), phased=opt.get("phased", "auto")
        )
        return hd
    if fmt == "ms":
        for hd in io.iter_ms(path, length=float(opt["length"])):
            if hd.chrom == chrom:
                return hd
        raise InputFormatError(f"{path}: no replicate {chrom!r}")
    if fmt == "trees":
        (hd,) = io.read_trees(path, chrom=chrom)
        return hd
    raise ConfigError(f"unknown input format {fmt!r}")


def save_chromosome(hd, path: str | os.PathLike, *, base: int = 0) -> None:
    """One chromosome as npz: positions, 0/1 haplotypes bit-packed (missing calls as 0), info."""
    info = {
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
    int8_path: str | os.PathLike | None = None,
):
    """(engine, None), or (None, reason) when this model cannot run in engine ``kind``.

    ``model`` is ``"fp32"`` or a compression method's name; ``onnx_int8`` runs the fp32 model's
    static int8 export (``int8_path``). A corrupt model file still raises.
    """
    from ..runtime import make_engine

    try:
        if kind == "onnx_int8":
            if model != FP32:
                raise ConfigError("onnx_int8 runs the fp32 model's int8 ONNX export only")
            if int8_path is None:
                raise ConfigError("onnx_int8 needs the int8 ONNX file of the fp32 model")
            model_path = int8_path
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


def save_replicate_scans(path, sweeps: list, neutrals: list, length: float, info: dict) -> None:
    """Grid scores of scanned test replicates (``scan_metrics.ReplicateScan``) as one npz."""
    scans = list(sweeps) + list(neutrals)
    grid = scans[0].positions if scans else np.zeros(0)
    scores = (
        np.stack([s.scores for s in scans]).astype(np.float64)
        if scans
        else np.zeros((0, len(grid)), np.float64)
    )
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp,
            positions=np.asarray(grid, np.float64),
            scores=scores,
            true_position=np.array([s.true_position for s in scans], np.float64),
            label=np.array([1] * len(sweeps) + [0] * len(neutrals), np.int8),
            sequence_length=np.float64(length),
            info=np.array(json.dumps(info)),
        )


def load_replicate_scans(path):
    """(sweep scans, neutral scans, sequence length, info) of a ``save_replicate_scans`` file."""
    from .scan_metrics import ReplicateScan

    keys = ("positions", "scores", "true_position", "label", "sequence_length", "info")
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in keys}
    except Exception as err:
        raise InputFormatError(f"{path}: unreadable replicate scan file ({err})") from err
    if d["scores"].shape != (len(d["label"]), len(d["positions"])):
        raise InputFormatError(f"{path}: field 'scores' has shape {d['scores'].shape}")
    sweeps, neutrals = [], []
    for row, t, lab in zip(d["scores"], d["true_position"], d["label"], strict=True):
        rs = ReplicateScan(d["positions"], row.astype(np.float64), float(t))
        (sweeps if lab == 1 else neutrals).append(rs)
    return sweeps, neutrals, float(d["sequence_length"]), json.loads(str(d["info"]))


def neutral_null(path) -> np.ndarray:
    """Per-window finite P(sweep) of the neutral replicates of a replicate scan file."""
    _, neutrals, _, _ = load_replicate_scans(path)
    if not neutrals:
        return np.zeros(0)
    s = np.concatenate([n.scores for n in neutrals])
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
    truth=None,
    title: str = "",
) -> dict:
    """Merge region tables, add p-values, call peaks; write ``out`` (tsv, bedgraph, bed, png).

    ``peaks``: the ``scan.peaks`` config; ``truth``: a truth table (``chromosome.read_truth``)
    whose sweeps and hotspots are marked on the PNG. Returns counts for the job's log and JSON.
    """
    from . import scan

    table = scan.merge_scores(tables)
    null = np.asarray(null, np.float64)
    if null.size and np.isfinite(null).any():
        table = scan.add_pvalues(table, null)
    else:
        table = table.assign(p_value=np.nan)
    column, thr = peaks["column"], float(peaks["threshold"])
    called = scan.call_peaks(table, thr, column=column, max_gap=int(peaks["max_gap"]))
    called = called[called["n_points"] >= int(peaks["min_points"])].reset_index(drop=True)
    scan.write_scores_tsv(table, out["tsv"])
    scan.write_bedgraph(table, out["bedgraph"], base=base)
    scan.write_peaks_bed(called, out["bed"], base=base)
    line = thr if column == "p_sweep" else score_threshold(null, thr)
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
        threshold=line if math.isfinite(line) and 0 <= line <= 1 else None,
        hotspots=hotspots,
        title=title or None,
    )
    scored = int(np.isfinite(table["p_sweep"].to_numpy(np.float64)).sum())
    return {
        "grid_points": len(table),
        "scored_points": scored,
        "peaks": len(called),
        "null_windows": int(null.size),
        "score_threshold": line if math.isfinite(line) else None,
        "min_p_value": float(np.nanmin(table["p_value"])) if scored and null.size else None,
    }


# --------------------------------------------------------------------------------------------------
# evaluation table

SUMMARY_COLUMNS = (
    "scenario",
    "method",
    "engine",
    "data",
    "success_rate",
    "distance_error_pct",
    "sensitivity_at_fpr",
    "fpr",
    "fpr_threshold",
    "observed_fpr",
    "n_sweep",
    "n_neutral",
    "grid_points",
    "windows",
    "seconds",
    "windows_per_s",
    "note",
)


def summary_row(
    scenario: str, method: str, engine: str, data: str, metrics: dict | None, info: dict
) -> dict:
    """One row of scan_summary.tsv (NaN metrics and the reason when the engine was skipped)."""
    row = dict.fromkeys(SUMMARY_COLUMNS, float("nan"))
    row.update(scenario=scenario, method=method, engine=engine, data=data, note="")
    if metrics:
        row.update({k: v for k, v in metrics.items() if k in SUMMARY_COLUMNS})
    seconds = info.get("seconds")
    windows = info.get("windows")
    row.update(
        grid_points=info.get("grid_points", float("nan")),
        windows=windows if windows is not None else float("nan"),
        seconds=seconds if seconds is not None else float("nan"),
        windows_per_s=(windows / seconds) if windows and seconds else float("nan"),
        note=info.get("skipped") or "",
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
    "input_chroms",
    "load_chromosome",
    "load_replicate_scans",
    "load_test_replicates",
    "merge_chromosome",
    "neutral_null",
    "open_engine",
    "plan",
    "read_chromosome",
    "save_chromosome",
    "save_replicate_scans",
    "score_threshold",
    "summary_row",
    "test_batches",
    "user_input",
    "write_summary",
]
