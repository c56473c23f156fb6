"""Writes DICOM Segmentations with highdicom (https://github.com/ImagingDataCommons/highdicom,
MIT licence) and the same masks as NIfTI with nibabel, for paramap's SEG ROI tests
(tests/seg_roi.rs).

Two modes:

  make_seg.py fixture OUTDIR
      A small oblique MR stack (12 columns x 10 rows x 5 slices, 2.0 x 2.5 mm, 3 mm apart,
      rotated 20 degrees about the patient's x axis) held in memory, and on it two lesions:
      "Lesion A" (a sphere) and "Lesion B" (a box). Writes seg_binary.dcm (BINARY),
      seg_fractional.dcm (FRACTIONAL, fraction 0.8 inside and 0.3 on a rim outside, so the
      rim is outside at paramap's threshold of one half) and lesion_a.nii.gz,
      lesion_b.nii.gz (the same masks on the stack's grid). highdicom leaves empty frames
      out, so the SEG's frames start at the second slice.

  make_seg.py series SOURCE_DIR OUT_SEG OUT_NIFTI CX CY CZ RADIUS
      A sphere (LPS mm) drawn on the DICOM series in SOURCE_DIR (one 2-D image per file):
      the SEG references its images; the NIfTI holds the same mask on that series' grid.

The vendored files under tests/data/seg/ were made with `make_seg.py fixture tests/data/seg`
(highdicom 0.28.2, pydicom 3.0.2, nibabel 5.4.2, numpy 2.4.6).
"""

import sys
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid


def geometry(ds):
    """Row and column direction, normal, pixel spacing (row, col) and position of a slice."""
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    row, col = iop[:3], iop[3:]
    return row, col, np.cross(row, col), np.array(ds.PixelSpacing, float), np.array(
        ds.ImagePositionPatient, float
    )


def world(ds):
    """LPS mm of every pixel centre of a slice, shape (rows, cols, 3)."""
    row, col, _, ps, ipp = geometry(ds)
    r = np.arange(ds.Rows)[:, None, None]
    c = np.arange(ds.Columns)[None, :, None]
    return ipp + c * ps[1] * row + r * ps[0] * col


def sorted_stack(images):
    _, _, normal, _, _ = geometry(images[0])
    return sorted(images, key=lambda d: float(np.dot(d.ImagePositionPatient, normal)))


def nifti_of(mask, images, path):
    """mask (slices, rows, cols) on the sorted stack, as NIfTI (x = column, y = row)."""
    row, col, normal, ps, ipp = geometry(images[0])
    if len(images) > 1:
        dz = float(
            np.dot(np.array(images[1].ImagePositionPatient, float) - ipp, normal)
        )
    else:
        dz = float(getattr(images[0], "SliceThickness", 1.0))
    lps = np.eye(4)
    lps[:3, 0] = row * ps[1]
    lps[:3, 1] = col * ps[0]
    lps[:3, 2] = normal * dz
    lps[:3, 3] = ipp
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    data = np.transpose(mask.astype(np.uint8), (2, 1, 0))
    nib.save(nib.Nifti1Image(data, ras), str(path))


def description(number, label):
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )


def segmentation(images, pixels, kind, labels, **extra):
    return hd.seg.Segmentation(
        source_images=images,
        pixel_array=pixels,
        segmentation_type=kind,
        segment_descriptions=[description(k + 1, l) for k, l in enumerate(labels)],
        series_instance_uid=generate_uid(),
        series_number=900,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="paramap tests",
        manufacturer_model_name="make_seg.py",
        software_versions=hd.__version__,
        device_serial_number="1",
        **extra,
    )


def fixture_images():
    """The oblique stack, in memory."""
    angle = np.deg2rad(20.0)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, np.cos(angle), np.sin(angle)])
    normal = np.cross(row, col)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    images = []
    for k in range(5):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID, ds.PatientName, ds.PatientSex, ds.PatientBirthDate = "SEG1", "Seg^Test", "O", ""
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20240101", "120000", "", "1"
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", 1, k + 1
        ds.Rows, ds.Columns = 10, 12
        ds.PixelSpacing = [2.5, 2.0]
        ds.SliceThickness = 3.0
        ds.ImageOrientationPatient = [*row, *col]
        ds.ImagePositionPatient = list(np.array([-11.0, -12.0, -6.0]) + k * 3.0 * normal)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.zeros((10, 12), np.uint16).tobytes()
        images.append(ds)
    return images


def fixture(out):
    out.mkdir(parents=True, exist_ok=True)
    images = fixture_images()
    pts = np.stack([world(d) for d in images])  # (slices, rows, cols, 3)
    centre = pts[3, 5, 6]
    a = np.linalg.norm(pts - centre, axis=-1) <= 4.5
    b = np.zeros(a.shape, bool)
    b[1:3, 2:5, 1:4] = True
    rim = (np.linalg.norm(pts - centre, axis=-1) <= 6.5) & ~a
    a[0], b[0] = False, False  # an empty first slice: its frames are left out
    binary = segmentation(
        images, np.stack([a, b], axis=-1).astype(np.uint8), hd.seg.SegmentationTypeValues.BINARY,
        ["Lesion A", "Lesion B"],
    )
    binary.save_as(out / "seg_binary.dcm")
    frac = np.stack([0.8 * a + 0.3 * rim, 0.8 * b], axis=-1).astype(np.float32)
    fractional = segmentation(
        images, frac, hd.seg.SegmentationTypeValues.FRACTIONAL, ["Lesion A", "Lesion B"],
        max_fractional_value=255,
    )
    fractional.save_as(out / "seg_fractional.dcm")
    nifti_of(a, images, out / "lesion_a.nii.gz")
    nifti_of(b, images, out / "lesion_b.nii.gz")
    print(f"Lesion A {a.sum()} voxels, Lesion B {b.sum()} voxels")


def series(src, out_seg, out_nifti, cx, cy, cz, radius):
    # One image per slice position (a DWI series holds one per b-value): the first met.
    seen, images = set(), []
    for p in sorted(Path(src).rglob("*")):
        if p.is_file():
            ds = pydicom.dcmread(p)
            key = tuple(round(float(x), 3) for x in ds.ImagePositionPatient)
            if key not in seen:
                seen.add(key)
                images.append(ds)
    images = sorted_stack(images)
    pts = np.stack([world(d) for d in images])
    mask = np.linalg.norm(pts - np.array([cx, cy, cz]), axis=-1) <= radius
    seg = segmentation(
        images, mask.astype(np.uint8), hd.seg.SegmentationTypeValues.BINARY, ["Lesion"]
    )
    seg.save_as(out_seg)
    nifti_of(mask, images, out_nifti)
    print(f"Lesion {mask.sum()} voxels")


if __name__ == "__main__":
    if sys.argv[1] == "fixture":
        fixture(Path(sys.argv[2]))
    else:
        series(sys.argv[2], sys.argv[3], sys.argv[4], *map(float, sys.argv[5:9]))
