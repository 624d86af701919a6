"""Scoring inputs whose haplotype count differs from the model's: the sample-size policy.

A SweepNet image has one row per haplotype, and a model is trained at one sample size: its
statistics (site frequency spectrum, haplotype structure, SNP density per window) change with the
number of rows, so an image of another height is not the image the model learned. SweepNet's and
ASDEC's authors train one model per sample size; ImaGene resizes images to a fixed height, which
changes the statistics. quantscan offers two policies (``apps.sweeps.scan.sample_size.policy``):

* ``match``: the workflow trains, compresses and calibrates a model at the input's sample size
  (or at the largest of ``apps.sweeps.scan.sample_size.sizes`` that the input reaches, then
  subsamples to it): a scenario ``<scenario>_h<size>`` with ``haplotypes: <size>`` joins the run
  (``matched_scenarios``).
* ``subsample``: an input of ``n`` haplotypes is scored by a model of ``m < n`` rows on ``K``
  random subsets of ``m`` haplotypes (``apps.sweeps.scan.sample_size.subsets``); a window's score
  is the mean over the subsets of the model's log-odds ``log P(sweep) - log P(neutral)`` (the
  geometric mean of the odds), and its ``p_sweep`` the mean of the subsets' probabilities. The subsets are drawn
  once per chromosome (or replicate) from the master seed and the job's names, so every window of
  a track sees the same haplotypes, and the p-value null (neutral simulations at ``n``
  haplotypes) is scored with the same procedure (its own subsets). Averaging K subsets narrows the
  score's spread, which is why the null must be scored the same way and not at ``m`` rows.

An input with exactly the model's count is scored as is (one subset: every haplotype, in order).
Fewer haplotypes than the model is an error that names both numbers: a model cannot score an
image with missing rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ...errors import ConfigError

POLICIES = ("subsample", "match")


@dataclasses.dataclass(frozen=True)
class SampleSize:
    """What is done with an input of ``input_haplotypes`` scored by a model of ``model_haplotypes``."""

    input_haplotypes: int
    model_haplotypes: int
    policy: str = "subsample"
    subsets: int = 1

    @property
    def action(self) -> str:
        """One line for logs, TSV headers and summaries."""
        n, m = self.input_haplotypes, self.model_haplotypes
        if n == m:
            how = "as is" if self.policy == "subsample" else "model trained at this size"
            return f"{n} input haplotypes, model {m}: scored {how}"
        return (
            f"{n} input haplotypes, model {m}: mean log-odds over {self.subsets} random subsets "
            f"of {m} haplotypes (policy {self.policy})"
        )

    def as_dict(self) -> dict:
        return dataclasses.asdict(self) | {"action": self.action}


def resolve(
    input_haplotypes: int,
    model_haplotypes: int,
    *,
    policy: str = "subsample",
    subsets: int = 8,
    source: str = "input",
) -> SampleSize:
    """The ``SampleSize`` of an input, or a ``ConfigError`` when the model cannot score it."""
    n, m = int(input_haplotypes), int(model_haplotypes)
    if policy not in POLICIES:
        raise ConfigError(
            f"apps.sweeps.scan.sample_size.policy must be one of {POLICIES}, got {policy!r}"
        )
    if m < 2:
        raise ConfigError(f"a model of {m} haplotypes cannot scan")
    if n < m:
        raise ConfigError(
            f"{source}: {n} haplotypes, fewer than the {m} of the model's images; a model cannot "
            f"score an image with missing rows: train a model at {n} haplotypes or fewer "
            "(apps.sweeps.data.haplotypes, or apps.sweeps.scan.sample_size.policy 'match')"
        )
    if subsets < 1:
        raise ConfigError(f"apps.sweeps.scan.sample_size.subsets must be >= 1, got {subsets}")
    return SampleSize(n, m, policy, 1 if n == m else int(subsets))


def draw_subsets(n: int, m: int, k: int, seed: int) -> np.ndarray:
    """``(k, m)`` sorted haplotype indices of ``k`` random subsets of ``m`` of ``n`` haplotypes.

    ``n == m`` gives the one identity subset (whatever ``k``).
    """
    if m > n:
        raise ConfigError(f"cannot draw subsets of {m} from {n} haplotypes")
    if n == m:
        return np.arange(n, dtype=np.int64)[None]
    rng = np.random.default_rng(seed)
    return np.sort(np.stack([rng.choice(n, m, replace=False) for _ in range(k)]), axis=1)


def score_windows(
    engine,
    haplotypes: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    width: int,
    subsets: np.ndarray,
    *,
    encoding: str = "sweepnet",
    column_order: str = "descending",
) -> tuple[np.ndarray, np.ndarray]:
    """(mean log-odds, mean P(sweep)) of each window over the haplotype ``subsets``.

    ``haplotypes`` is ``(n_sites, n_haplotypes)``; each subset's windows are encoded as in training
    (``scan.encode_windows``) and scored by ``engine.predict_log_odds``.
    """
    from . import CLASSES
    from .scan import encode_windows

    sweep = CLASSES.index("sweep")

    total = np.zeros(len(starts), np.float64)
    prob = np.zeros(len(starts), np.float64)
    if len(starts) == 0:
        return total, prob
    for rows in subsets:
        x = encode_windows(haplotypes[:, rows], starts, stops, width, encoding, column_order)
        lo = engine.predict_log_odds(x, sweep)
        total += lo
        prob += 1.0 / (1.0 + np.exp(-lo))
    return total / len(subsets), prob / len(subsets)


__all__ = ["POLICIES", "SampleSize", "draw_subsets", "resolve", "score_windows"]
