"""Benchmark: the genome scan of one simulated chromosome end to end through the workflow.

The scan's own engines are timed by ``scan_engines.py``; this harness times what a user waits for:
``snakemake`` asked for the per-chromosome outputs of the simulated chromosome (scores TSV, bedGraph,
peaks BED, PNG, scan JSON) of every model x engine, which runs ``scan_prepare`` (the ``.trees`` file
-> compact npz), the ``scan_region`` jobs (``apps.sweeps.scan.regions`` per model x engine) and
``scan_merge``
(p-values, q-values, peaks, tracks), with the DAG building, job start-up and file I/O in between.

It makes a working directory (``--workdir``) with ``config/config.yaml`` copied from the repository
(the workflow reads it relative to the working directory) and an override ``bench.yaml``: a
``--length`` bp chromosome of ``--haplotypes`` haplotypes in segments of the scenario's sequence
length, one grid point per ``--grid-spacing`` bp, ``--models`` through ``--engines``, ``--subsets``
haplotype subsets per window, ``apps.sweeps.data.run: [constant]`` and the scan evaluated on
``constant`` only.

* Phase 1 (setup, timed but not part of the figure): the fp32 model, the compressed models, the
  ONNX export, the simulated chromosome and the p-value nulls (replicate scans at the chromosome's
  haplotype count), as explicit targets, so nothing of the viral part runs.
* Phase 2 (the figure), once per ``--regions`` value: the per-chromosome outputs are deleted with
  the scan's benchmark files and logs, a dry run checks that only ``scan_prepare``, ``scan_region``
  and ``scan_merge`` would run (``--rerun-triggers mtime``: concurrent edits of the workflow's code
  do not rerun phase 1), and the same command is timed for real.

Reported per run: phase-2 wall seconds; per-rule seconds from Snakemake's benchmark files
(``results/benchmarks/rules/sweeps/scan/{prepare,region,merge}/...``); engine seconds and windows from
the region JSONs (``seconds``, ``windows``, ``timings.score`` = encoding + inference of every
subset); ``end_to_end_windows_per_s`` = windows / phase-2 wall; ``engine_windows_per_s`` = windows /
the region jobs' summed ``timings.score`` (one job's rate: jobs running side by side on several cores
can make the end-to-end rate exceed it); their ratio (target >= 0.5); the same windows scored by
each engine on its own in this process after phase 2 (``engine_reference``, ``--reference-windows``;
``isolated_engine_windows_per_s`` and ``ratio_end_to_end_vs_isolated_engine``, a reference that the
jobs' own inefficiencies do not inflate); per region job the overhead
(job wall minus scoring: process start and imports, reading the npz, opening the engine, the table,
TSV and JSON); and Snakemake's own time (first job start after launch, gaps, shutdown) from the
timestamps of its log. The load average is sampled during phase 2 (a shared machine is slower and
noisier). See ``--help``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

import machine  # noqa: E402  # benchmarks/machine.py: a script's folder is on sys.path
import yaml  # noqa: E402
from scan_engines import LoadSampler  # noqa: E402

from quantscan.atomic import write_text  # noqa: E402

SCENARIO = "constant"  # apps.sweeps.data.run: the only trained scenario, so the chromosome's and the models'
INPUT = "simulated"  # scan_plan.SIMULATED
CHROM = "chrSim"
SCAN_RULES = ("scan_prepare", "scan_region", "scan_merge")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_engines(items: list[str]) -> dict[str, list[str]]:
    """``["fp32=onnx_fp32", "compressed=packed,onnx_fp32"]`` -> apps.sweeps.scan.engines."""
    out = {"fp32": [], "compressed": []}
    for item in items:
        key, sep, names = item.partition("=")
        if not sep or key not in out:
            raise SystemExit(
                f"--engines: {item!r} is not fp32=ENGINE[,...] or compressed=ENGINE[,...]"
            )
        out[key] += [n for n in names.split(",") if n]
    return out


def override_config(args, base: dict, regions: int) -> dict:
    """The bench.yaml override merged over the copied config/config.yaml."""
    sw, sc = base["apps"]["sweeps"]["data"], base["apps"]["sweeps"]["scan"]
    seg = sw["scenarios"].get(SCENARIO, {}).get("sequence_length", sw["sequence_length"])
    if args.length % seg:
        raise SystemExit(f"--length {args.length} is not a whole number of {seg} bp segments")
    grid = args.length // args.grid_spacing
    sim = sc["simulated"]
    # the default sweeps and hotspot sit in a 2 Mb chromosome: spread them over this one alike
    n = args.length // seg
    scale = n / (sim["length"] / seg)
    sweeps = sorted({min(int(s * scale), n - 1) for s in sim["sweep_segments"]})
    hotspots = sorted({min(int(s * scale), n - 1) for s in sim["hotspot_segments"]} - set(sweeps))
    scan: dict = {
        "grid_points": int(grid),
        "regions": int(regions),
        "models": list(args.models),
        "engines": args.engines,
        "sample_size": {"subsets": args.subsets},
        "evaluate": {"scenarios": [SCENARIO]},
        "simulated": {
            "names": [CHROM],
            "length": int(args.length),
            "segment_length": int(seg),
            "haplotypes": int(args.haplotypes),
            "sweep_segments": sweeps,
            "hotspot_segments": hotspots,
        },
    }
    data: dict = {"run": [SCENARIO]}
    if args.scan_threads is not None:
        scan["threads"] = args.scan_threads
    reps = {
        k: v
        for k, v in (("train", args.train_replicates), ("test", args.test_replicates))
        if v is not None
    }
    if reps:
        data["replicates"] = reps
    return {"apps": {"sweeps": {"data": data, "scan": scan}}}


def model_engines(args) -> list[tuple[str, str]]:
    return [
        (m, e) for m in args.models for e in args.engines["fp32" if m == "fp32" else "compressed"]
    ]


def setup_targets(args) -> list[str]:
    """Phase 1: models, ONNX exports, the chromosome and the p-value null of every model x engine."""
    out = []
    for m in args.models:
        if m == "fp32":
            out.append(f"results/sweeps/models/{SCENARIO}/fp32/model.pt")
        else:
            out.append(f"results/sweeps/compress/{SCENARIO}/{m}/model.qsp")
    if "fp32" in args.models and {"onnx_fp32", "onnx_int8"} & set(args.engines["fp32"]):
        out += [
            f"results/sweeps/scan/onnx/{SCENARIO}/fp32.onnx",
            f"results/sweeps/scan/onnx/{SCENARIO}/fp32.int8.onnx",
        ]
    out.append(f"results/sweeps/scan/sim/{CHROM}.trees")
    out += [
        f"results/sweeps/scan/replicates/{SCENARIO}/{m}/{e}/{SCENARIO}.h{args.haplotypes}.npz"
        for m, e in model_engines(args)
    ]
    return out


def scan_targets(args) -> list[str]:
    """Phase 2: the per-chromosome outputs of every model x engine."""
    out = []
    for m, e in model_engines(args):
        prefix = f"results/sweeps/scan/{INPUT}/{m}/{e}/{CHROM}"
        out += [
            f"{prefix}.{x}"
            for x in ("scores.tsv", "scores.bedgraph", "peaks.bed", "png", "scan.json")
        ]
    return out


def scan_outputs(work: Path) -> list[Path]:
    """Everything phase 2 writes (removed before each run, so every job runs and no stale file is read)."""
    return [
        work / f"results/sweeps/scan/data/{INPUT}",
        work / f"results/sweeps/scan/regions/{INPUT}",
        work / f"results/sweeps/scan/{INPUT}",
        *(
            work / f"results/benchmarks/rules/sweeps/scan/{r}/{INPUT}"
            for r in ("prepare", "region", "merge")
        ),
        *(work / f"logs/sweeps/scan/{r}/{INPUT}" for r in ("prepare", "region", "merge")),
    ]


def snakemake(
    work: Path, configfile: Path, cores: int, targets: list[str], *extra: str, log_to=None
):
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        str(cores),
        "-s",
        str(ROOT / "workflow" / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(configfile),
        *extra,
        "--",
        *targets,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - t0
    if log_to is not None:
        Path(log_to).write_text(proc.stdout)
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed ({' '.join(cmd)}):\n{proc.stdout[-6000:]}")
    return proc.stdout, wall, cmd


_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]\s*$")
_START = re.compile(r"^(?:local)?rule (\w+):\s*$")
_JOBID = re.compile(r"^\s+jobid: (\d+)\s*$")
_DONE = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)")
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")


def timeline(text: str, launched: float) -> dict:
    """Job start and finish times (s after launch, 1-s resolution) from Snakemake's log."""
    stamp, rule, job, jobs = None, None, None, {}
    for line in text.splitlines():
        if m := _STAMP.match(line):
            stamp = datetime.strptime(
                " ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y"
            ).timestamp()
        elif (m := _START.match(line)) and stamp is not None:
            rule = m.group(1)
        elif (m := _JOBID.match(line)) and rule is not None:
            job = jobs[int(m.group(1))] = {"rule": rule, "start": stamp - launched}
            rule = None
        elif (m := _WILDCARDS.match(line)) and job is not None:
            w = dict(kv.split("=", 1) for kv in m.group(1).split(", ") if "=" in kv)
            job["job"] = "/".join(w[k] for k in ("scan_model", "engine", "region") if k in w)
        elif (m := _DONE.match(line)) and stamp is not None and int(m.group(1)) in jobs:
            jobs[int(m.group(1))]["end"] = stamp - launched
    return {"jobs": sorted(jobs.values(), key=lambda j: j["start"])}


def job_stats(text: str) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table."""
    counts, inside = {}, False
    for line in text.splitlines():
        if line.startswith("Job stats:"):
            inside = True
        elif inside:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("job", "total"):
                counts[parts[0]] = int(parts[1])
            elif not parts and counts:
                break
    return counts


def read_benchmark(path: Path) -> dict:
    """Snakemake's benchmark TSV of one job: wall seconds, CPU seconds, max RSS (MB)."""
    with open(path) as fh:
        row = next(csv.DictReader(fh, delimiter="\t"))

    def num(key):
        try:
            return float(row[key])
        except (KeyError, TypeError, ValueError):
            return None

    return {"s": num("s"), "cpu_s": num("cpu_time"), "max_rss_mb": num("max_rss")}


def collect(work: Path, args, regions: int, wall: float) -> dict:
    """Per-rule and per-job seconds, windows and rates of one phase-2 run."""
    bench = work / "results/benchmarks/rules/sweeps/scan"
    prepare = read_benchmark(bench / f"prepare/{INPUT}/{CHROM}.tsv")
    per, jobs = {}, []
    for m, e in model_engines(args):
        region_jobs = []
        for r in range(regions):
            name = f"{INPUT}/{m}/{e}/{CHROM}.region{r}"
            info = json.loads((work / f"results/sweeps/scan/regions/{name}.json").read_text())
            b = read_benchmark(bench / f"region/{name}.tsv")
            score = float(info["timings"].get("score", 0.0))
            job = {
                "model": m,
                "engine": e,
                "region": r,
                "job_s": b["s"],
                "cpu_s": b["cpu_s"],
                "max_rss_mb": b["max_rss_mb"],
                "scan_s": info["seconds"],
                "score_s": score,
                "windows": info["windows"],
                "grid_points": info["grid_points"],
                "overhead_s": b["s"] - score,
                "outside_scan_s": b["s"] - info["seconds"],
                "score_windows_per_s": info["windows"] / score if score > 0 else None,
                "engine_description": info["engine"],
            }
            region_jobs.append(job)
        merge = read_benchmark(bench / f"merge/{INPUT}/{m}/{e}/{CHROM}.tsv")
        windows = sum(j["windows"] for j in region_jobs)
        score = sum(j["score_s"] for j in region_jobs)
        per[f"{m}/{e}"] = {
            "windows": windows,
            "score_s": score,
            "engine_windows_per_s": windows / score if score > 0 else None,
            "region_jobs_s": sum(j["job_s"] for j in region_jobs),
            "region_overhead_s": sum(j["overhead_s"] for j in region_jobs),
            "merge_s": merge["s"],
            "merge_cpu_s": merge["cpu_s"],
        }
        jobs += region_jobs
    windows = sum(v["windows"] for v in per.values())
    score = sum(v["score_s"] for v in per.values())
    e2e = windows / wall
    eng = windows / score if score > 0 else None
    region_s = sum(j["job_s"] for j in jobs)
    merge_s = sum(v["merge_s"] for v in per.values())
    return {
        "regions": regions,
        "phase2_wall_s": wall,
        "windows": windows,
        "end_to_end_windows_per_s": e2e,
        "engine_windows_per_s": eng,
        "ratio_end_to_end_vs_engine": e2e / eng if eng else None,
        "target_ratio": 0.5,
        "rules": {
            "scan_prepare": {"jobs": 1, **prepare},
            "scan_region": {
                "jobs": len(jobs),
                "s": region_s,
                "cpu_s": sum(j["cpu_s"] or 0.0 for j in jobs),
                "score_s": score,
                "overhead_s": region_s - score,
                "overhead_per_job_s": (region_s - score) / len(jobs),
            },
            "scan_merge": {"jobs": len(per), "s": merge_s, "per_job_s": merge_s / len(per)},
        },
        "job_seconds_sum": prepare["s"] + region_s + merge_s,
        "per_model_engine": per,
        "region_jobs": jobs,
    }


def snakemake_overhead(run: dict, tl: dict, cores: int) -> dict:
    """Where the wall went outside the jobs: before the first job, after the last, and idle cores."""
    jobs = [j for j in tl["jobs"] if "end" in j]
    if not jobs:
        return {}
    first = min(j["start"] for j in jobs)
    last = max(j["end"] for j in jobs)
    # core-seconds the jobs' own walls do not fill between the first start and the last finish
    busy = run["job_seconds_sum"]
    return {
        "before_first_job_s": first,
        "after_last_job_s": run["phase2_wall_s"] - last,
        "jobs_span_s": last - first,
        "idle_core_seconds_in_span": cores * (last - first) - busy,
        "critical_path_note": "1-s timestamps from Snakemake's log; job walls from its benchmark files",
    }


def engine_reference(work: Path, args, base: dict, n_windows: int) -> dict:
    """Each model x engine on its own, in this process: ``n_windows`` windows (grid points x
    subsets) from the middle of the prepared chromosome, scored as ``scan_region`` scores them
    (``sample_size.score_windows``: gather each subset's haplotype columns, encode, infer) but with
    the haplotypes sliced to each batch's SNPs, with the scan's threads and batch size.

    Also times one subset's column gather over a whole region's SNPs at each ``--regions`` value
    (``whole_region_gather``): at commit 990c245 ``scan.scan_chromosome`` passed the region's
    haplotypes to ``score_windows`` for every batch, so a region job paid it (batches x subsets)
    times; ``score_excess_over_isolated_s`` of each run says whether the jobs still pay it."""
    import numpy as np

    from quantscan.apps.sweeps import scan, scan_inputs
    from quantscan.apps.sweeps.sample_size import draw_subsets, score_windows
    from quantscan.apps.sweeps.scan_engines import open_engine  # not the benchmark scan_engines.py

    sw, sc = base["apps"]["sweeps"]["data"], base["apps"]["sweeps"]["scan"]
    width, model_haps = sw["image"]["snps"], sw["haplotypes"]
    batch = sc["batch_size"]
    threads = args.scan_threads if args.scan_threads is not None else sc["threads"]
    hd, _ = scan_inputs.load_chromosome(
        work / f"results/sweeps/scan/data/{INPUT}/{CHROM}.npz", lazy=True
    )
    n_points = args.length // args.grid_spacing
    grid = scan.make_grid(*scan.grid_span(hd, sc["span"]), n_points)
    starts, stops = scan.window_bounds(hd.positions, grid, width)
    subsets = draw_subsets(hd.n_haplotypes, model_haps, args.subsets, 1)
    k = len(subsets)
    points = min(n_points, max(batch, -(-n_windows // k)))
    mid = (n_points - points) // 2
    sel = np.arange(mid, mid + points)
    sel = sel[stops[sel] - starts[sel] >= max(sc["min_snps"], 1)]
    out = {"windows": int(len(sel) * k), "threads": threads, "batch_size": batch, "engines": {}}
    image = sw["image"]
    for m, e in model_engines(args):
        if m == "fp32":
            path = work / f"results/sweeps/models/{SCENARIO}/fp32/model.pt"
        else:
            path = work / f"results/sweeps/compress/{SCENARIO}/{m}/model.qsp"
        onnx = work / f"results/sweeps/scan/onnx/{SCENARIO}/fp32.onnx" if e == "onnx_fp32" else None
        if e == "onnx_int8":
            onnx = work / f"results/sweeps/scan/onnx/{SCENARIO}/fp32.int8.onnx"
        t0 = time.perf_counter()
        engine, skipped = open_engine(
            e,
            path,
            model=m,
            shape=(model_haps, width),
            batch_size=batch,
            threads=threads,
            onnx_path=onnx if m == "fp32" else None,
        )
        open_s = time.perf_counter() - t0
        if engine is None:
            out["engines"][f"{m}/{e}"] = {"skipped": skipped}
            continue

        def run(idx, engine=engine):
            lo, hi = int(starts[idx].min()), int(stops[idx].max())
            hap = hd.haplotypes[lo:hi]
            score_windows(
                engine,
                hap,
                starts[idx] - lo,
                stops[idx] - lo,
                width,
                subsets,
                encoding=image["encoding"],
                column_order=image["column_order"],
            )

        run(sel[:batch])  # warm-up (compiled kernels, ONNX Runtime's first call)
        t0 = time.perf_counter()
        for i in range(0, len(sel), batch):
            run(sel[i : i + batch])
        seconds = time.perf_counter() - t0
        out["engines"][f"{m}/{e}"] = {
            "open_engine_s": open_s,
            "seconds": seconds,
            "windows_per_s": len(sel) * k / seconds,
        }
    gather = {}
    for regions in args.regions:
        part = scan.region_slice(n_points, regions, 0)
        lo, hi = int(starts[part].min()), int(stops[part].max())
        hap = hd.haplotypes[lo:hi]
        t0 = time.perf_counter()
        for rows in subsets[:2]:
            hap[:, rows]
        per = (time.perf_counter() - t0) / min(2, k)
        batches = -(-len(grid[part]) // batch)
        gather[str(regions)] = {
            "region_snps": hi - lo,
            "gather_s_per_subset": per,
            "batches_per_job": batches,
            "estimated_gather_s_per_job": per * batches * k,
            "estimated_gather_s_all_jobs": per * batches * k * regions * len(model_engines(args)),
        }
        del hap
    out["whole_region_gather"] = gather
    return out


def reference_rate(run: dict, reference: dict) -> float | None:
    """The run's windows / the seconds the isolated engines would take for them (one job, serial)."""
    seconds = 0.0
    for key, v in run["per_model_engine"].items():
        rate = reference["engines"].get(key, {}).get("windows_per_s")
        if not rate:
            return None
        seconds += v["windows"] / rate
    return run["windows"] / seconds if seconds else None


def git_commit() -> dict:
    def git(*a):
        try:
            return subprocess.run(
                ["git", "-C", str(ROOT), *a], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty_tracked_files": len(status.splitlines()) if status is not None else None,
    }


def print_table(result: dict) -> None:
    print()
    print(
        f"{'regions':>7} {'phase 2 s':>9} {'windows':>8} {'e2e w/s':>8} {'engine w/s':>10} "
        f"{'ratio':>6} {'prepare s':>9} {'region s':>9} {'score s':>8} {'ovh/job s':>9} {'merge s':>8} "
        f"{'pre-1st-job s':>13} {'isolated w/s':>12} {'ratio iso':>9}"
    )
    for r in result["runs"]:
        rules = r["rules"]
        print(
            f"{r['regions']:>7} {r['phase2_wall_s']:>9.1f} {r['windows']:>8} "
            f"{r['end_to_end_windows_per_s']:>8.1f} {r['engine_windows_per_s']:>10.1f} "
            f"{r['ratio_end_to_end_vs_engine']:>6.2f} {rules['scan_prepare']['s']:>9.1f} "
            f"{rules['scan_region']['s']:>9.1f} {rules['scan_region']['score_s']:>8.1f} "
            f"{rules['scan_region']['overhead_per_job_s']:>9.1f} {rules['scan_merge']['s']:>8.1f} "
            f"{r['snakemake'].get('before_first_job_s', float('nan')):>13.0f} "
            f"{r.get('isolated_engine_windows_per_s') or float('nan'):>12.1f} "
            f"{r.get('ratio_end_to_end_vs_isolated_engine') or float('nan'):>9.2f}"
        )
    print()
    print(
        f"{'regions':>7} {'model/engine':>22} {'windows':>8} {'score s':>8} {'engine w/s':>10} {'jobs s':>8} {'merge s':>8}"
    )
    for r in result["runs"]:
        for k, v in r["per_model_engine"].items():
            print(
                f"{r['regions']:>7} {k:>22} {v['windows']:>8} {v['score_s']:>8.1f} "
                f"{v['engine_windows_per_s']:>10.1f} {v['region_jobs_s']:>8.1f} {v['merge_s']:>8.1f}"
            )
    ref = result.get("engine_reference") or {}
    if ref:
        print()
        print(
            f"engines on their own ({ref['windows']} windows, {ref['threads']} thread(s), batch-local gather):"
        )
        for k, v in ref["engines"].items():
            print(f"  {k:>22} {v.get('windows_per_s', float('nan')):>9.1f} windows/s")
        print(
            "a subset's column gather over a whole region's SNPs, if done once per batch and subset "
            "(as scan_chromosome did at 990c245):"
        )
        for regions, g in ref["whole_region_gather"].items():
            print(
                f"  regions {regions}: {g['region_snps']} SNPs, {g['gather_s_per_subset']:.3f} s x "
                f"{g['batches_per_job']} batches x subsets = {g['estimated_gather_s_per_job']:.1f} s per job, "
                f"{g['estimated_gather_s_all_jobs']:.1f} s in all"
            )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--workdir", default=str(Path(tempfile.gettempdir()) / "quantscan-scan-chromosome")
    )
    ap.add_argument("--out", default=str(ROOT / "results/benchmarks/scan_chromosome.json"))
    ap.add_argument("--length", type=int, default=10_000_000, help="bp of the simulated chromosome")
    ap.add_argument("--haplotypes", type=int, default=198)
    ap.add_argument("--grid-spacing", type=int, default=1000, help="bp per grid point")
    ap.add_argument(
        "--models",
        nargs="+",
        default=["fp32", "mixed_table6"],
        help="fp32 and/or apps.sweeps.compress.methods names",
    )
    ap.add_argument(
        "--engines",
        nargs="+",
        default=["fp32=onnx_fp32", "compressed=packed"],
        help="apps.sweeps.scan.engines as fp32=ENGINE[,ENGINE] compressed=ENGINE[,ENGINE]",
    )
    ap.add_argument(
        "--regions",
        type=int,
        nargs="+",
        default=[2],
        help="apps.sweeps.scan.regions; one phase-2 run for each",
    )
    ap.add_argument("--subsets", type=int, default=8, help="apps.sweeps.scan.sample_size.subsets")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="snakemake --cores")
    ap.add_argument(
        "--scan-threads",
        type=int,
        default=None,
        help="apps.sweeps.scan.threads (default: the config's)",
    )
    ap.add_argument(
        "--train-replicates", type=int, default=None, help="apps.sweeps.data.replicates.train"
    )
    ap.add_argument(
        "--test-replicates", type=int, default=None, help="apps.sweeps.data.replicates.test"
    )
    ap.add_argument(
        "--reference-windows",
        type=int,
        default=16384,
        help="windows per model x engine timed on their own after phase 2 (0: skip)",
    )
    ap.add_argument(
        "--clean",
        action="store_true",
        help="remove --workdir first (else phase 1 reuses its outputs)",
    )
    args = ap.parse_args(argv)
    args.engines = parse_engines(args.engines)

    info = machine.describe() | {"load_average_start": list(os.getloadavg())}
    work = Path(args.workdir).resolve()
    if args.clean and work.exists():
        shutil.rmtree(work)
    (work / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config" / "config.yaml", work / "config" / "config.yaml")
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    configfile = work / "bench.yaml"

    # phase 1: setup (the regions value does not change any of its jobs)
    cfg = override_config(args, base, args.regions[0])
    configfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
    log(f"phase 1 (setup) in {work}")
    out1, setup_wall, cmd1 = snakemake(
        work, configfile, args.cores, setup_targets(args), log_to=work / "phase1.log"
    )
    setup_jobs = [j["rule"] for j in timeline(out1, time.time())["jobs"]]
    log(f"phase 1: {setup_wall:.1f} s, {len(setup_jobs)} jobs")

    runs = []
    with LoadSampler() as load:
        for regions in args.regions:
            cfg = override_config(args, base, regions)
            configfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
            for p in scan_outputs(work):
                shutil.rmtree(p, ignore_errors=True)
            targets = scan_targets(args)
            extra = ("--rerun-triggers", "mtime")
            dry, dry_wall, _ = snakemake(
                work, configfile, args.cores, targets, *extra, "--dry-run", "--quiet", "rules"
            )
            counts = job_stats(dry)
            if not counts or set(counts) - set(SCAN_RULES):
                raise SystemExit(
                    f"phase 2 would run more than the scan's rules: {counts}\n{dry[-3000:]}"
                )
            log(f"phase 2, regions {regions}: {counts} (dry run {dry_wall:.1f} s)")
            load_start = os.getloadavg()
            launched = time.time()
            out2, wall, cmd2 = snakemake(
                work,
                configfile,
                args.cores,
                targets,
                *extra,
                log_to=work / f"phase2.regions{regions}.log",
            )
            run = collect(work, args, regions, wall)
            tl = timeline(out2, launched)
            run["snakemake"] = snakemake_overhead(run, tl, args.cores) | {"dry_run_s": dry_wall}
            run["timeline"] = tl["jobs"]
            run["jobs_planned"] = counts
            run["load_average_start"] = list(load_start)
            run["load_average_end"] = list(os.getloadavg())
            run["command"] = " ".join(cmd2)
            runs.append(run)
            log(
                f"  {wall:.1f} s: {run['windows']} windows, end to end "
                f"{run['end_to_end_windows_per_s']:.1f} w/s, engine {run['engine_windows_per_s']:.1f} w/s "
                f"(ratio {run['ratio_end_to_end_vs_engine']:.2f})"
            )
        reference = {}
        if args.reference_windows > 0:
            log(f"engines on their own: {args.reference_windows} windows each")
            reference = engine_reference(work, args, base, args.reference_windows)
            for k, v in reference["engines"].items():
                log(f"  {k}: {v.get('windows_per_s', 0):.1f} windows/s")
            for run in runs:
                iso = reference_rate(run, reference)
                run["isolated_engine_windows_per_s"] = iso
                run["ratio_end_to_end_vs_isolated_engine"] = (
                    run["end_to_end_windows_per_s"] / iso if iso else None
                )
                # scoring seconds in the jobs beyond what the engines need on their own
                run["score_excess_over_isolated_s"] = (
                    run["rules"]["scan_region"]["score_s"] - run["windows"] / iso if iso else None
                )
    info["load_average_end"] = list(os.getloadavg())
    info["load_average_during_phase2"] = load.summary()

    result = {
        "name": Path(args.out).stem,
        "machine": info,
        "git": git_commit(),
        "settings": {
            "workdir": str(work),
            "length_bp": args.length,
            "haplotypes": args.haplotypes,
            "grid_points": args.length // args.grid_spacing,
            "grid_spacing_bp": args.grid_spacing,
            "models": args.models,
            "engines": args.engines,
            "subsets": args.subsets,
            "cores": args.cores,
            "scan_threads": args.scan_threads,
            "override": cfg,
        },
        "setup": {"seconds": setup_wall, "jobs": len(setup_jobs), "command": " ".join(cmd1)},
        "runs": runs,
        "engine_reference": reference,
        "notes": [
            "end_to_end_windows_per_s = windows / phase-2 wall (snakemake launch to exit)",
            "engine_windows_per_s = windows / sum of the region jobs' timings.score (encoding + "
            "inference of every subset; one job's rate, so jobs side by side on several cores can "
            "make the end-to-end rate exceed it)",
            "overhead of a region job = its benchmark wall minus its scoring seconds",
            "windows = scored grid points x haplotype subsets",
        ],
    }
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    print_table(result)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
