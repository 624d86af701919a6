"""quantscan: train, compress and scan with small neural networks (selective sweeps, viral, EM)."""

from snakemake.utils import min_version

min_version("9.20")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/sweeps.smk"


rule all:
    default_target: True
    input:
        sweeps_targets(),
