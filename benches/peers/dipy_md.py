"""DIPY's diffusion tensor (weighted least squares, its default) on a DWI NIfTI with
.bval/.bvec beside it; writes the mean diffusivity (the ADC of the trace) as md.nii.

Usage: dipy_md.py DWI.nii OUT.nii. Whole process, as `paramap adc` and `dwi2adc` are timed.
"""
import sys

import nibabel as nib
import numpy as np
from dipy.core.gradients import gradient_table
from dipy.io import read_bvals_bvecs
from dipy.reconst.dti import TensorModel
from dipy.segment.mask import median_otsu

dwi, out = sys.argv[1], sys.argv[2]
stem = dwi.removesuffix(".gz").removesuffix(".nii")
bvals, bvecs = read_bvals_bvecs(stem + ".bval", stem + ".bvec")
img = nib.load(dwi)
data = np.asarray(img.dataobj, dtype=np.float32)
_, mask = median_otsu(data, vol_idx=np.flatnonzero(bvals < 50), median_radius=1, numpass=1)
fit = TensorModel(gradient_table(bvals, bvecs=bvecs)).fit(data, mask=mask)
nib.save(nib.Nifti1Image(fit.md.astype(np.float32), img.affine), out)
