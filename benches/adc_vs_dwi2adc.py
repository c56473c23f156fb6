#!/usr/bin/env python3
"""Whole-process ADC timing, paramap against MRtrix3 dwi2adc, in the same output format.

Usage: benches/adc_vs_dwi2adc.py DWI.nii.gz [ROUNDS] [PARAMAP]
(ROUNDS 21 by default, PARAMAP target/release/paramap; dwi.bval/dwi.bvec beside the input).

Each round runs every command once, in turn, so that a busy spell of a shared machine hits all
of them alike; the median of the rounds is reported with the range. Output folders are removed
before each run. Standard library only.
"""
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

dwi = Path(sys.argv[1])
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 21
paramap = sys.argv[3] if len(sys.argv) > 3 else "target/release/paramap"
stem = dwi.name.removesuffix(".gz").removesuffix(".nii")
bvec, bval = dwi.with_name(stem + ".bvec"), dwi.with_name(stem + ".bval")
tmp = Path(tempfile.mkdtemp())
commands = {
    "paramap .nii": [paramap, "adc", dwi, "-o", tmp / "p_nii", "--backend", "cpu", "-q", "--uncompressed"],
    "dwi2adc .nii": ["dwi2adc", dwi, "-fslgrad", bvec, bval, tmp / "adc.nii", "-force", "-quiet"],
    "paramap .nii.gz": [paramap, "adc", dwi, "-o", tmp / "p_gz", "--backend", "cpu", "-q"],
    "dwi2adc .nii.gz": ["dwi2adc", dwi, "-fslgrad", bvec, bval, tmp / "adc.nii.gz", "-force", "-quiet"],
}
times = {name: [] for name in commands}
for _ in range(rounds):
    for name, command in commands.items():
        if "-o" in command:
            shutil.rmtree(command[command.index("-o") + 1], ignore_errors=True)
        start = time.perf_counter()
        subprocess.run([str(c) for c in command], check=True, stdout=subprocess.DEVNULL)
        times[name].append(time.perf_counter() - start)
for name, t in times.items():
    print(f"{name:16s} median {statistics.median(t):.3f} s  ({min(t):.3f}-{max(t):.3f}, {rounds} rounds)")
for fmt in (".nii", ".nii.gz"):
    ratio = statistics.median(times["paramap " + fmt]) / statistics.median(times["dwi2adc " + fmt])
    print(f"ratio paramap/dwi2adc writing {fmt}: {ratio:.2f}")
shutil.rmtree(tmp, ignore_errors=True)
