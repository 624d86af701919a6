"""Export the fp32 sweep model to ONNX once (engine onnx_fp32) and quantize it to static int8
(engine onnx_int8) through the export the int8 compression method uses (``export.onnx.export_int8``),
calibrated on apps.sweeps.scan.calibration_samples seeded training images."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/..")
from quantscan import modelio
from quantscan.apps import sweeps as _sweeps  # noqa: F401 - registers the image split layout
from quantscan.data import load_split
from quantscan.export.onnx import describe_onnx, export_int8
from quantscan.scripting import run
from quantscan.seeds import derive_seed


def main(smk, log):
    model, _ = modelio.load_fp32(smk.input.model)
    x, _ = load_split(smk.input.train)
    built = export_int8(
        model,
        x,
        smk.output.onnx,
        smk.output.int8,
        calibration_samples=smk.params.calibration_samples,
        seed=derive_seed(smk.params.seed, "scan_int8", smk.wildcards.scenario),
    )
    meta = describe_onnx(built["int8"])
    log.info(
        "int8 ONNX from %d calibration images: %d bytes, %s",
        built["calibration_samples"],
        meta["file_bytes"],
        meta["metadata"],
    )


run(main, snakemake)
