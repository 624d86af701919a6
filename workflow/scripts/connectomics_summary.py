"""results/connectomics/summary.tsv: per scanned volume, model and engine, the model's size, the
voxel throughput and the segmentation quality, beside the fp32 model's test metrics."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import json
from pathlib import Path

import pandas as pd

from quantscan.atomic import atomic_path
from quantscan.scripting import run

COLUMNS = [
    "volume",
    "method",
    "engine",
    "model_bits",
    "file_bytes",
    "size_pct",
    "density",
    "voxels_per_s",
    "accuracy",
    "balanced_accuracy",
    "voi_split",
    "voi_merge",
    "voi",
    "arand",
    "cremi_score",
    "boundary_f1",
    "segments",
    "true_segments",
    "inference_seconds",
    "segmentation_seconds",
]


def main(smk, log):
    sizes = {}
    for path in smk.input.models:
        m = json.loads(open(path).read())
        # the method's directory (a method's metrics name its primary variant, e.g. a gamma)
        sizes[Path(path).parent.name] = {
            k: m.get(k)
            for k in ("model_bits", "file_bytes", "size_pct", "density", "torch_int8_file_bytes")
        }
    rows = []
    for path in smk.input.scans:
        m = json.loads(open(path).read())
        row = {"volume": m["volume"], "method": m["model"], "engine": m["engine"]}
        size = dict(sizes.get(m["model"], {}))
        torch_bytes = size.pop("torch_int8_file_bytes", None)
        if m["engine"] == "torch_int8" and torch_bytes is not None:  # its own file
            size["file_bytes"] = torch_bytes
        row |= size
        row |= {k: m.get(k) for k in COLUMNS if k not in row}
        rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_path(smk.output.tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    for r in rows:
        log.info(
            "%s %s/%s: %.3g voxels/s, VOI %s, ARAND %s",
            r["volume"],
            r["method"],
            r["engine"],
            r["voxels_per_s"],
            r.get("voi"),
            r.get("arand"),
        )


run(main, snakemake)
