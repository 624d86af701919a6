"""The connectomics application's own helpers (workflow/rules/connectomics/*.smk): its data set,
the volumes the blockwise scan segments, and the scan's models and engines."""

EM = APPS["connectomics"]
EM_DATASET = EM.datasets()[0]
#: jobs that share the blockwise inference of one volume, model and engine
EM_SLABS = EM.resolved["scan"]["slabs"]


def em_volume_spec(volume):
    """open_volume's spec of a scan volume: the synthetic one written by connectomics_data, or a
    user's (apps.connectomics.data.volumes.scan)."""
    if volume == "synthetic" and EM_DATASET == "synthetic":
        return {
            "path": "results/connectomics/volumes/synthetic.h5",
            "format": "hdf5",
            "labels": "volumes/labels/neuron_ids",
        }
    spec = next(
        v for v in EM.resolved["data"]["volumes"]["scan"] if v["name"] == volume
    )
    return {k: v for k, v in spec.items() if k != "name"}


def em_volume_file(wildcards):
    return em_volume_spec(wildcards.volume)["path"]


EM_SCANS = [
    dict(volume=v, model=m, engine=e)
    for v in EM.scan_volumes()
    for m in EM.scan_models()
    for e in EM.scan_engines(m)
]
