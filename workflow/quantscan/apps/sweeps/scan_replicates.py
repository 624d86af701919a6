"""Replicates for the genome scan (workflow/rules/sweeps/scan.smk) and their scans.

The scan simulates its own replicates (``simulate_scan_batch``, ``load_scan_replicates``): neutral
ones are the p-value null of inputs at their haplotype count, sweeps at random positions measure
localisation. A scenario's test replicates (``test_batches``, ``load_test_replicates``) are read
from the shards of its simulations (the replicates after the training ones).

Replicate scans (``save_replicate_scans``) hold the per-replicate grid scores of a scenario's test
replicates; they give both ASDEC's metrics (``scan_metrics.evaluate``) and, from the neutral
replicates, the per-window null of the chromosome scans' empirical p-values
(``scan_results.neutral_null``).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ...atomic import atomic_path
from ...errors import ConfigError, InputFormatError

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


__all__ = [
    "load_replicate_scans",
    "load_scan_replicates",
    "load_test_replicates",
    "save_replicate_scans",
    "simulate_scan_batch",
    "test_batches",
]
