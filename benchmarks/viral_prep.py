"""Viral data preparation: one-hot encoding, near-duplicate clustering and simulation, timed.

Side by side on the same inputs, with the outputs checked to agree (fastest of three calls, but
one for the exact clustering):

* ``onehot``: ``quantscan.apps.viral.onehot.encode`` (a byte lookup table over all records at once)
  against a per-base Python loop, on ``--records`` random records of ``--length`` bases (the loop
  runs on a prefix and is extrapolated);
* ``clustering``: ``quantscan.apps.viral.split.cluster_sequences`` (MinHash sketches, single linkage)
  on families of near-identical sequences, against exact k-mer Jaccard over Python sets on a
  prefix of them (extrapolated by the number of pairs), with the clusters of both on that prefix;
* ``simulate``: ``quantscan.apps.viral.simulate.simulate_dataset`` (four classes along msprime
  genealogies), records per second.

Writes results/benchmarks/viral_prep.json (``--out``) with the machine and its load average.

    .venv/bin/python benchmarks/viral_prep.py [--records 500 --length 3000 --families 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

import machine  # noqa: E402  # benchmarks/machine.py: a script's folder is on sys.path
import numpy as np  # noqa: E402

from quantscan.apps.viral import onehot, simulate, split  # noqa: E402
from quantscan.atomic import write_text  # noqa: E402

BASES = np.frombuffer(b"ACGT", np.uint8)


def timed(fn, *args, repeats: int = 1, **kwargs):
    """``fn``'s output and its fastest time over ``repeats`` calls (the first pays page faults)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t)
    return out, best


def encode_per_base(seqs: list[bytes], length: int) -> np.ndarray:
    """The naive encoder: one Python step per base (A, C, G, T, anything else in row 4)."""
    row = {ord("A"): 0, ord("C"): 1, ord("G"): 2, ord("T"): 3}
    x = np.zeros((len(seqs), 5, length), np.uint8)
    for i, s in enumerate(seqs):
        for j, b in enumerate(s.upper()):
            x[i, row.get(b, 4), j] = 1
    return x


def canonical_kmers(s: str, k: int) -> set[str]:
    """Each k-mer or its reverse complement, whichever sorts first (as the MinHash sketches)."""
    rc = s[::-1].translate(str.maketrans("ACGT", "TGCA"))
    n = len(s) - k + 1
    return {min(s[i : i + k], rc[n - 1 - i : n - 1 - i + k]) for i in range(n)}


def cluster_exact(seqs: list[str], threshold: float, k: int) -> np.ndarray:
    """Single-linkage clusters by exact Jaccard of canonical k-mers (all pairs, Python sets)."""
    sets = [canonical_kmers(s, k) for s in seqs]
    pairs = [
        (i, j)
        for i in range(len(seqs))
        for j in range(i)
        if len(sets[i] & sets[j]) >= threshold * len(sets[i] | sets[j])
    ]
    u, v = np.array(pairs, np.int64).reshape(-1, 2).T
    return split.cluster_ids(len(seqs), u, v)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def bench_onehot(args, rng) -> dict:
    seqs = [rng.choice(BASES, size=args.length).tobytes() for _ in range(args.records)]
    fast, t_fast = timed(onehot.encode, seqs, args.length, repeats=3)
    n_loop = max(1, args.records // 20)
    slow, t_slow = timed(encode_per_base, seqs[:n_loop], args.length, repeats=3)
    bases = args.records * args.length
    t_slow_all = t_slow * args.records / n_loop
    return {
        "records": args.records,
        "length": args.length,
        "engines": {
            "lookup_table": {"seconds": t_fast, "mbases_per_s": bases / t_fast / 1e6},
            "per_base_loop": {
                "seconds": t_slow_all,
                "mbases_per_s": bases / t_slow_all / 1e6,
                "measured_records": n_loop,
                "extrapolated": n_loop < args.records,
            },
        },
        "identical": bool(np.array_equal(fast[:n_loop], slow)),
        "speedup": t_slow_all / t_fast,
    }


def bench_clustering(args, rng) -> dict:
    def mutate(s: np.ndarray) -> str:
        s = s.copy()
        hits = rng.random(s.size) < args.divergence
        s[hits] = rng.choice(BASES, size=int(hits.sum()))
        return s.tobytes().decode()

    roots = [rng.choice(BASES, size=args.family_length) for _ in range(args.families)]
    seqs = [mutate(r) for r in roots for _ in range(args.family_size)]
    perm = rng.permutation(len(seqs))  # families interleaved, so a prefix holds many
    seqs = [seqs[i] for i in perm]
    minhash, t_min = timed(split.cluster_sequences, seqs, threshold=args.threshold, repeats=3)
    n_exact = min(len(seqs), args.exact_prefix)
    exact, t_exact = timed(cluster_exact, seqs[:n_exact], args.threshold, 16)
    prefix_minhash = split.cluster_sequences(seqs[:n_exact], threshold=args.threshold)
    pairs, pairs_exact = len(seqs) * (len(seqs) - 1) / 2, n_exact * (n_exact - 1) / 2
    t_exact_all = t_exact * pairs / pairs_exact
    return {
        "sequences": len(seqs),
        "families": args.families,
        "sequence_length": args.family_length,
        "divergence": args.divergence,
        "threshold": args.threshold,
        "clusters_found": int(minhash.max() + 1),
        "engines": {
            "minhash": {"seconds": t_min, "sequences_per_s": len(seqs) / t_min},
            "exact_sets": {
                "seconds": t_exact_all,
                "sequences_per_s": len(seqs) / t_exact_all,
                "measured_sequences": n_exact,
                "extrapolated": n_exact < len(seqs),
            },
        },
        "same_clusters_on_prefix": same_partition(prefix_minhash, exact),
        "speedup": t_exact_all / t_min,
    }


def bench_simulate(args) -> dict:
    recs, t = timed(
        simulate.simulate_dataset, n_per_class=args.simulate_per_class, seed=11, repeats=3
    )
    bp = sum(len(r.sequence) for r in recs)
    return {
        "records": len(recs),
        "seconds": t,
        "records_per_s": len(recs) / t,
        "kbp_per_s": bp / t / 1e3,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--records", type=int, default=500)
    p.add_argument("--length", type=int, default=3000)
    p.add_argument("--families", type=int, default=200)
    p.add_argument("--family-size", type=int, default=10)
    p.add_argument("--family-length", type=int, default=1500)
    p.add_argument("--divergence", type=float, default=0.005)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--exact-prefix", type=int, default=300)
    p.add_argument("--simulate-per-class", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/viral_prep.json")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    info = machine.describe() | {"load_average_start": list(os.getloadavg())}
    result = {
        "onehot": bench_onehot(args, rng),
        "clustering": bench_clustering(args, rng),
        "simulate": bench_simulate(args),
    }
    result = {"machine": info | {"load_average_end": list(os.getloadavg())}, **result}
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    oh, cl, sim = result["onehot"], result["clustering"], result["simulate"]
    print(
        f"one-hot: lookup table {oh['engines']['lookup_table']['mbases_per_s']:.1f} Mbases/s, "
        f"per-base loop {oh['engines']['per_base_loop']['mbases_per_s']:.2f} ({oh['speedup']:.0f}x), "
        f"identical: {oh['identical']}\n"
        f"clustering {cl['sequences']} sequences: MinHash {cl['engines']['minhash']['seconds']:.2f} s, "
        f"exact sets {cl['engines']['exact_sets']['seconds']:.0f} s ({cl['speedup']:.0f}x), "
        f"{cl['clusters_found']} clusters for {cl['families']} families, same clusters on the "
        f"first {cl['engines']['exact_sets']['measured_sequences']}: {cl['same_clusters_on_prefix']}\n"
        f"simulate: {sim['records']} records in {sim['seconds']:.2f} s\n"
        f"-> {args.out}"
    )
    return result


if __name__ == "__main__":
    main()
