"""osipy's DSCPipeline.run on a DSC NIfTI (4-D, time last): prints the seconds run() took.

Usage: osipy_dsc.py DSC.nii TR_SECONDS TE_MS. Loading the file and importing are outside the
timed call (as the issue's "compute only" figure); the whole process is timed by peers.py.
"""
import sys
import time

import nibabel as nib
import numpy as np
from osipy.pipeline import DSCPipeline, DSCPipelineConfig

path, tr, te = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
data = np.asarray(nib.load(path).dataobj, dtype=np.float64)
t = np.arange(data.shape[-1]) * tr
mask = data[..., 0] > 0.1 * np.percentile(data[..., 0], 99)
pipeline = DSCPipeline(DSCPipelineConfig(te=te))
start = time.perf_counter()
pipeline.run(data, t, mask=mask)
print(f"{time.perf_counter() - start:.6f}")
