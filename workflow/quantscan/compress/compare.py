"""Comparison across compression methods of one application (issue 4): tables and figures.

``variants_table`` gathers every trained variant of every method (each compression job's
``rows.tsv``, not only the primary row of the summary) and the fp32 baselines into one table with a
``family`` column (the method type, else the method name's known prefix). ``pareto`` draws test
accuracy against model size (log x) with the Pareto front, one panel per scenario; ``density`` draws
accuracy against the non-zero weight fraction for the pruning schedules (Fernandes & Kung, Fig. 13).
``engine_bars`` is the int8 method's figure (latency, size and accuracy per engine).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from ..atomic import atomic_path
from ..plots import plt, save
from ..summary import read_metrics
from ..tables import read_tsv

FP32 = "fp32"
#: method families by name prefix (the method types; longest match wins)
FAMILIES = (
    FP32,
    "mixed",
    "layer_sensitivity",
    "uniform",
    "one_bit_rounds",
    "auto_search",
    "po2_vs_auto",
    "ttq",
    "attq",
    "dorefa",
    "q_then_p_iter",
    "p_then_q_iter",
    "p_then_q_epochs",
    "int8",
)
#: the pruning schedules of Fernandes & Kung, in the order of their Fig. 13
SCHEDULES = ("q_then_p_iter", "p_then_q_iter", "p_then_q_epochs")
#: leading columns of variants.tsv
LEAD = [
    "scenario",
    "family",
    "job",
    "method",
    "primary",
    "accuracy",
    "mcc",
    "model_bits",
    "file_bytes",
    "size_pct",
    "density",
]


def family_of(method: str) -> str:
    """The longest known family that ``method`` starts with, else its text before the first '_'."""
    hits = [f for f in FAMILIES if method == f or method.startswith(f + "_")]
    return max(hits, key=len) if hits else method.split("_", 1)[0]


def _read_rows(path) -> pd.DataFrame:
    return read_tsv(path, ("scenario", "method", "accuracy"), "rows table")


def variants_table(fp32_metrics: Iterable, jobs: Iterable[Mapping]) -> pd.DataFrame:
    """One row per (scenario, variant): the fp32 baselines and every row of every job's rows.tsv.

    ``fp32_metrics``: metrics.json paths of the fp32 models. ``jobs``: dicts with ``rows`` (a
    rows.tsv path), ``metrics`` (the job's metrics.json: its ``method`` is the primary variant),
    ``job`` (the config name) and optionally ``type`` (the method type, the row's family).
    """
    frames = []
    for path in fp32_metrics:
        m = read_metrics(path)
        row = {k: v for k, v in m.items() if not isinstance(v, dict | list)}
        frames.append(pd.DataFrame([{**row, "job": FP32, "family": FP32, "primary": True}]))
    for job in jobs:
        t = _read_rows(job["rows"])
        primary = read_metrics(job["metrics"])["method"] if job.get("metrics") else None
        t["job"] = job["job"]
        t["family"] = job.get("type") or [family_of(str(m)) for m in t.method]
        t["primary"] = t.method.eq(primary)
        frames.append(t)
    if not frames:
        return pd.DataFrame(columns=LEAD)
    table = pd.concat(frames, ignore_index=True, sort=False)
    lead = [c for c in LEAD if c in table.columns]
    rest = sorted(c for c in table.columns if c not in lead)
    return (
        table[lead + rest]
        .sort_values(["scenario", "family", "job", "method"], kind="stable")
        .reset_index(drop=True)
    )


def write_variants(table: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def pareto_front(size: Iterable[float], accuracy: Iterable[float]) -> np.ndarray:
    """Boolean mask of the points no other point beats: smaller or equal size and higher or equal
    accuracy, one of them strictly. Of identical points only the first is marked; NaNs never are."""
    size = np.asarray(list(size), np.float64)
    acc = np.asarray(list(accuracy), np.float64)
    mask = np.zeros(len(size), bool)
    ok = np.flatnonzero(np.isfinite(size) & np.isfinite(acc))
    # by size ascending, accuracy descending: a point is on the front iff it beats every
    # point before it in accuracy
    order = ok[np.lexsort((-acc[ok], size[ok]))]
    best = -math.inf
    for i in order:
        if acc[i] > best:
            mask[i] = True
            best = acc[i]
    return mask


def size_column(table: pd.DataFrame, prefer: str = "file_bytes") -> str:
    """``prefer`` when every row has it, else ``model_bits``."""
    if prefer in table.columns and table[prefer].notna().all() and len(table):
        return prefer
    return "model_bits"


_SIZE_LABEL = {"file_bytes": "model file size (bytes)", "model_bits": "model size (weight bits)"}


_MARKERS = "osD^vPX<>hp"


def _styles(families: Iterable[str]) -> dict[str, dict]:
    """A colour (tab20, 20 distinct) and a marker per family, the same in every figure; fp32 black."""
    palette = plt.get_cmap("tab20").colors
    # the scans (many variants each) last: they get the light half of the palette
    scans = ("layer_sensitivity", "uniform", "one_bit_rounds")
    order = [f for f in FAMILIES if f != FP32 and f not in scans] + list(scans)
    order += [f for f in families if f not in order and f != FP32]
    out = {FP32: {"color": "k", "marker": "*"}}
    for i, f in enumerate(order):
        # even tab20 entries first (the saturated half), so few families stay far apart
        out[f] = {
            "color": palette[(2 * i) % 20 + (2 * i) // 20 % 2],
            "marker": _MARKERS[i % len(_MARKERS)],
        }
    return out


def _size_label(value: float, unit: str = "B") -> str:
    """1500 -> "1.5 kB", 20000 -> "20 kB" (bits: "20 kbit")."""
    for scale, prefix in ((1e6, "M"), (1e3, "k"), (1, "")):
        if value >= scale:
            return f"{value / scale:g} {prefix}{unit}"
    return f"{value:g} {unit}"


def _size_axis(ax, column: str) -> None:
    """Log x axis labelled at 1, 2 and 5 x powers of ten, in readable units."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    unit = "B" if column == "file_bytes" else "bit"
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _size_label(v, unit)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _figure_legend(fig, axes) -> None:
    """One legend for all panels (families have one style everywhere), right of the panels."""
    handles = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    if "Pareto front" in handles:  # last, after the families
        handles["Pareto front"] = handles.pop("Pareto front")
    fig.legend(
        handles.values(), handles.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8
    )


def _panels(n: int, width: float = 5.2, height: float = 4.2):
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _note(path, title: str, text: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    ax.set_title(title)
    save(fig, path)


def pareto(table: pd.DataFrame, path, title: str, size: str = "file_bytes") -> None:
    """Test accuracy against model size (log x) over all variants, one panel per scenario.

    One colour per family; primary variants are outlined; fp32 is a black star; the line is the
    Pareto front (smallest size for its accuracy). ``size``: file_bytes (falls back to model_bits
    when some row lacks it) or model_bits.
    """
    rows = table[table.accuracy.notna()] if len(table) else table
    if not len(rows):
        _note(path, title, "no evaluated models")
        return
    col = size_column(rows, size)
    rows = rows[rows[col].notna() & (rows[col] > 0)]
    scenarios = list(dict.fromkeys(rows.scenario))
    styles = _styles(dict.fromkeys(rows.family))
    fig, axes = _panels(len(scenarios))
    for ax, scenario in zip(axes, scenarios, strict=True):
        part = rows[rows.scenario == scenario]
        for fam, g in part.groupby("family", sort=False):
            style = styles[fam]
            if fam == FP32:
                ax.plot(g[col], g.accuracy, ls="", ms=14, label="fp32", zorder=4, **style)
                continue
            prim = g.primary.astype(bool) if "primary" in g else pd.Series(False, g.index)
            ax.scatter(
                g[col][~prim],
                g.accuracy[~prim],
                s=18,
                alpha=0.6,
                c=[style["color"]],
                marker=style["marker"],
            )
            ax.scatter(
                g[col][prim],
                g.accuracy[prim],
                s=60,
                c=[style["color"]],
                marker=style["marker"],
                edgecolors="k",
                label=fam,
                zorder=3,
            )
            if not prim.any():  # a legend entry for families without a primary row
                ax.scatter([], [], s=18, c=[style["color"]], marker=style["marker"], label=fam)
        front = part[pareto_front(part[col], part.accuracy)].sort_values(col)
        ax.step(front[col], front.accuracy, where="post", color="0.3", lw=1, ls="--", zorder=2)
        ax.plot([], [], color="0.3", ls="--", lw=1, label="Pareto front")
        _size_axis(ax, col)
        ax.set(xlabel=_SIZE_LABEL.get(col, col), ylabel="test accuracy", title=scenario)
        ax.grid(alpha=0.3, which="both")
    _figure_legend(fig, axes)
    fig.suptitle(title)
    save(fig, path)


def schedule_lines(part: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """``(label, family, rows by density)`` per line of the density figure: one line per schedule
    and bit widths (``bits_per_layer``), so a schedule whose gammas ran as separate jobs (one
    method per gamma) is still one line; its label is the family, with the jobs when a family has
    more than one line."""
    if not len(part):
        return []
    bits = part.bits_per_layer.fillna("") if "bits_per_layer" in part else part.job
    lines = [
        (fam, g.sort_values("density"))
        for (fam, _), g in part.groupby([part.family, bits], sort=False)
    ]
    per_family = pd.Series([fam for fam, _ in lines]).value_counts()
    out = []
    for fam, g in lines:
        jobs = ", ".join(dict.fromkeys(g.job))
        label = fam if per_family[fam] == 1 or jobs == fam else f"{fam} ({jobs})"
        out.append((label, fam, g))
    return out


def density(table: pd.DataFrame, path, title: str) -> None:
    """Test accuracy against density (non-zero weight fraction) for the pruning schedules, one line
    per schedule and bit widths (:func:`schedule_lines`), one panel per scenario (Fernandes & Kung, Fig. 13);
    fp32 as a dashed line. Without any schedule rows the figure says so."""
    has = len(table) and "density" in table.columns
    sched = table[table.family.isin(SCHEDULES) & table.density.notna()] if has else table.iloc[:0]
    if not len(sched):
        _note(
            path,
            title,
            "no pruning-schedule variants with a density\n(methods of type "
            + ", ".join(SCHEDULES)
            + ")",
        )
        return
    scenarios = list(dict.fromkeys(sched.scenario))
    fig, axes = _panels(len(scenarios))
    styles = _styles(SCHEDULES)
    for ax, scenario in zip(axes, scenarios, strict=True):
        for label, fam, g in schedule_lines(sched[sched.scenario == scenario]):
            ax.plot(g.density, g.accuracy, "-", label=label, ms=4, **styles[fam])
            prim = g[g.primary.astype(bool)] if "primary" in g else g.iloc[:0]
            ax.plot(prim.density, prim.accuracy, ls="", mec="k", ms=9, **styles[fam])
        ref = table[(table.family == FP32) & (table.scenario == scenario)]
        if len(ref):
            acc = float(ref.accuracy.iloc[0])
            ax.axhline(acc, color="k", ls="--", lw=1, label=f"fp32 ({acc:.3f})")
        ax.set(xlabel="density (non-zero weights / weights)", ylabel="test accuracy")
        ax.set_title(scenario)
        ax.set_xlim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    save(fig, path)


def engine_bars(
    latency: Mapping, sizes: Mapping[str, float], accuracy: Mapping[str, float], path, title: str
) -> None:
    """The int8 method's figure: latency per input, size and test accuracy of fp32 PyTorch, fp32
    ONNX Runtime and int8 ONNX Runtime (``export.onnx.compare_latency`` output, bytes, accuracies)."""
    engines = ["torch_fp32", "ort_fp32", "ort_int8", "torch_int8"]
    labels = ["PyTorch\nfp32", "ORT\nfp32", "ORT\nint8", "PyTorch\nint8"]
    colors = ["C0", "C1", "C2", "C3"]
    keep = [i for i, e in enumerate(engines) if f"{e}_s" in latency and e in sizes]
    engines, labels, colors = ([v[i] for i in keep] for v in (engines, labels, colors))
    batch = latency["batch"]
    us = [1e6 * latency[f"{e}_s"] / batch for e in engines]
    kb = [sizes[e] / 1024 for e in engines]
    acc = [accuracy[e] for e in engines]
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(12, 4.2))
    a1.bar(labels, us, color=colors)
    for i, e in enumerate(engines):
        speedup = latency["torch_fp32_s"] / latency[f"{e}_s"]
        a1.text(i, us[i], f"{speedup:.2f}x", ha="center", va="bottom", fontsize=8)
    a1.set(
        ylabel="µs per input (median)",
        title=f"latency, batch {batch}, {latency['threads']} thread(s)\n(speedup vs PyTorch fp32)",
    )
    a2.bar(labels, kb, color=colors)
    for i in range(len(engines)):
        a2.text(i, kb[i], f"{kb[i]:.1f}", ha="center", va="bottom", fontsize=8)
    a2.set(
        ylabel="KiB",
        title=f"size (fp32 weights; ONNX files)\nint8 file {kb[1] / kb[2]:.2f}x smaller than fp32",
    )
    a3.bar(labels, acc, color=colors)
    for i in range(len(engines)):
        a3.text(i, acc[i], f"{acc[i]:.3f}", ha="center", va="bottom", fontsize=8)
    a3.set(ylabel="test accuracy", ylim=(0, 1.08), title="accuracy")
    fig.subplots_adjust(top=0.78, wspace=0.35)
    fig.suptitle(title)
    save(fig, path)
