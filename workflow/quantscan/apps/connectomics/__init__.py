"""Connectomics: electron-microscopy (EM) volumes -> 3-D U-Net -> blockwise segmentation.

Library modules so far: :mod:`.volumes` (reading user volumes: CREMI HDF5, ISBI 2012 / SNEMI3D
TIFF stacks, zarr v2/v3, OME-Zarr; writing OME-Zarr), :mod:`.synthetic` (seeded synthetic
anisotropic ssTEM-like volumes with ground truth labels and affinities), :mod:`.metrics` (VOI
split / merge, adapted Rand error, the CREMI score, boundary F1), :mod:`.segment` (affinities ->
watershed fragments -> mean-affinity agglomeration, as in waterz) and :mod:`.blockwise` (block
plans with halos, resumable blockwise prediction as in daisy, merging per-block fragments).
"""
