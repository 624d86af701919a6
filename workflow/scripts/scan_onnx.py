"""Export the fp32 sweep model to ONNX once (engine onnx_fp32) and quantize it to static int8
(engine onnx_int8; calibrated on training images)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
import numpy as np

from quantscan import modelio
from quantscan.compress.int8 import build_int8, describe_onnx
from quantscan.data import load_split
from quantscan.scripting import run
from quantscan.seeds import derive_seed


def main(smk, log):
    model, _ = modelio.load_fp32(smk.input.model)
    x, _ = load_split(smk.input.train)
    rng = np.random.default_rng(derive_seed(smk.params.seed, "scan_int8", smk.wildcards.scenario))
    calib = x[rng.permutation(len(x))[: smk.params.calibration]].astype(np.float32)
    paths = build_int8(model, calib, smk.output.onnx, smk.output.int8)
    meta = describe_onnx(paths["int8"])
    log.info(
        "int8 ONNX from %d calibration images: %d bytes, %s",
        len(calib),
        meta["file_bytes"],
        meta["metadata"],
    )


run(main, snakemake)
