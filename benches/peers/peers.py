#!/usr/bin/env python3
"""Runs paramap and its peers interleaved and prints the comparison (issue #20).

Called by benches/peers/run.sh, which sets up the tools and the inputs; standard library only.
Each round runs every command once, the order reversed every other round, so that a busy spell
hits every command alike. Every command runs under /usr/bin/time -v (peak RSS, user+sys CPU).
paramap, dwi2adc and DIPY are timed as whole processes; osipy as its DSCPipeline.run call alone
(the figure issue #20 quotes: compute only, Python start-up and file reading left out), with
its whole process beside it.
"""
import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--work", type=Path, required=True)
ap.add_argument("--paramap", required=True)
ap.add_argument("--venv-python")
args = ap.parse_args()
w = args.work
dwi = w / "dwi/nifti/dwi.nii"
bvec, bval = w / "dwi/nifti/dwi.bvec", w / "dwi/nifti/dwi.bval"
dsc = w / "dsc/nifti/dsc.nii"
out = w / "out"
P = args.paramap

# name -> (command, folder or file removed before each run, group for ratios)
commands = {
    "paramap adc .nii": ([P, "adc", dwi, "-o", out / "p_adc_nii", "--backend", "cpu", "-q", "--uncompressed"], out / "p_adc_nii"),
    "paramap adc .nii.gz": ([P, "adc", dwi, "-o", out / "p_adc_gz", "--backend", "cpu", "-q"], out / "p_adc_gz"),
    # What dwi2adc writes (S0 and ADC): the like-for-like comparison.
    "paramap adc --maps adc,s0 .nii": ([P, "adc", dwi, "-o", out / "p_adc2_nii", "--backend", "cpu", "-q", "--uncompressed", "--maps", "adc,s0"], out / "p_adc2_nii"),
    "paramap adc --maps adc,s0 .nii.gz": ([P, "adc", dwi, "-o", out / "p_adc2_gz", "--backend", "cpu", "-q", "--maps", "adc,s0"], out / "p_adc2_gz"),
}
if shutil.which("dwi2adc"):
    commands["dwi2adc .nii"] = (["dwi2adc", dwi, "-fslgrad", bvec, bval, out / "adc.nii", "-force", "-quiet"], out / "adc.nii")
    commands["dwi2adc .nii.gz"] = (["dwi2adc", dwi, "-fslgrad", bvec, bval, out / "adc.nii.gz", "-force", "-quiet"], out / "adc.nii.gz")
if args.venv_python:
    commands["DIPY DTI (WLS) MD .nii"] = ([args.venv_python, HERE / "dipy_md.py", dwi, out / "md.nii"], out / "md.nii")
commands["paramap dsc .nii"] = ([P, "dsc", dsc, "-o", out / "p_dsc_nii", "--backend", "cpu", "-q", "--uncompressed"], out / "p_dsc_nii")
commands["paramap dsc .nii.gz"] = ([P, "dsc", dsc, "-o", out / "p_dsc_gz", "--backend", "cpu", "-q"], out / "p_dsc_gz")
if args.venv_python:
    commands["osipy DSCPipeline.run"] = ([args.venv_python, HERE / "osipy_dsc.py", dsc, "1.5", "30"], None)

out.mkdir(parents=True, exist_ok=True)
wall = {n: [] for n in commands}
cpu = {n: [] for n in commands}
rss = {n: [] for n in commands}
osipy_process = []


def measure(name, command, remove):
    if remove is not None:
        shutil.rmtree(remove, ignore_errors=True) if remove.is_dir() else remove.unlink(missing_ok=True)
    start = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-v"] + [str(c) for c in command], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{name} failed:\n{r.stderr[-3000:]}")
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", r.stderr)[1])
    sys_ = float(re.search(r"System time \(seconds\): ([\d.]+)", r.stderr)[1])
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)[1])
    if name.startswith("osipy"):
        osipy_process.append(elapsed)
        elapsed = float(r.stdout.strip().splitlines()[-1])
    wall[name].append(elapsed)
    cpu[name].append(user + sys_)
    rss[name].append(peak / 1024)


names = list(commands)
for k in range(args.rounds):
    order = names if k % 2 == 0 else names[::-1]
    for n in order:
        measure(n, *commands[n])
    print(f"round {k + 1}/{args.rounds} done", flush=True)

med = {n: statistics.median(v) for n, v in wall.items()}
cores = os.cpu_count()
try:
    model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except (OSError, StopIteration):
    model = platform.processor()
load = os.getloadavg()
version = subprocess.run([P, "--version"], capture_output=True, text=True).stdout.strip()
print(f"\nMachine: {model}, {cores} cores, {platform.platform()}; load average at the end "
      f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {version}; {args.rounds} interleaved rounds\n")
print("| command | wall median (s) | wall min–max (s) | CPU user+sys median (s) | peak RSS (MiB) |")
print("|---|---|---|---|---|")
for n in names:
    print(f"| {n} | {med[n]:.3f} | {min(wall[n]):.3f}–{max(wall[n]):.3f} | "
          f"{statistics.median(cpu[n]):.3f} | {max(rss[n]):.0f} |")
if osipy_process:
    print(f"\nosipy whole process (Python start, imports, reading, run): median "
          f"{statistics.median(osipy_process):.3f} s; its CPU and RSS columns are the whole process.")


def ratio(a, b, goal):
    if a in med and b in med:
        lo = min(wall[a]) / max(wall[b])
        hi = max(wall[a]) / min(wall[b])
        per_round = sorted(x / y for x, y in zip(wall[a], wall[b]))
        c = statistics.median(cpu[a]) / max(statistics.median(cpu[b]), 1e-9)
        print(f"| {a} ÷ {b} | {med[a] / med[b]:.2f} | {per_round[0]:.2f}–{per_round[-1]:.2f} | "
              f"{lo:.2f}–{hi:.2f} | {c:.2f} | {goal} |")


print("\n| ratio | of wall medians | per round, min–max | extremes (min÷max – max÷min) | of CPU medians | goal (wall) |")
print("|---|---|---|---|---|---|")
ratio("paramap adc .nii", "dwi2adc .nii", "≤ 1.0 (five images against one)")
ratio("paramap adc .nii.gz", "dwi2adc .nii.gz", "≤ 0.5 (five images against one)")
ratio("paramap adc --maps adc,s0 .nii", "dwi2adc .nii", "≤ 1.0 (the same maps)")
ratio("paramap adc --maps adc,s0 .nii.gz", "dwi2adc .nii.gz", "≤ 0.5 (the same maps)")
ratio("paramap adc .nii", "DIPY DTI (WLS) MD .nii", "")
ratio("paramap dsc .nii", "osipy DSCPipeline.run", "≤ 1/15 = 0.067")
ratio("paramap dsc .nii.gz", "osipy DSCPipeline.run", "")
if "osipy DSCPipeline.run" in med:
    print(f"\nDSC speed-up over osipy (paramap .nii whole process against osipy run() alone): "
          f"{med['osipy DSCPipeline.run'] / med['paramap dsc .nii']:.1f}× (goal ≥ 15×)")
dsc_bytes = dsc.stat().st_size - 352
dwi_bytes = dwi.stat().st_size - 352
print(f"\nMemory goals: paramap dsc ≤ 2 × {dsc_bytes / 1e6:.1f} MB + 100 MB = {(2 * dsc_bytes + 100e6) / 2**20:.0f} MiB; "
      f"paramap adc ≤ 2 × {dwi_bytes / 1e6:.1f} MB + 50 MB = {(2 * dwi_bytes + 50e6) / 2**20:.0f} MiB (RSS column in MiB)")
json.dump({"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": rss}, open(w / "peers.json", "w"), indent=1)
print(f"raw figures: {w / 'peers.json'}")
