"""quantscan: train, compress and scan with small neural networks (selective sweeps, viral, EM)."""

from snakemake.utils import min_version

min_version("9.20")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/compress.smk"
include: "workflow/rules/viral.smk"
include: "workflow/rules/scan.smk"


rule all:
    default_target: True
    input:
        sweeps_targets(),
        viral_targets(),
        scan_targets(),
