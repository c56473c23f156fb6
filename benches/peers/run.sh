#!/usr/bin/env bash
# paramap against its peers on the same machine, in one run (issue #20). Not part of CI.
#
# Usage: benches/peers/run.sh [ROUNDS] [WORKDIR]
#   ROUNDS   interleaved rounds (default 5); WORKDIR scratch folder (default: a new /tmp folder)
#   PARAMAP=path    the binary to measure (default target/release/paramap, built if missing)
#   PYTHON=path     a Python >= 3.12 for the throwaway venv (osipy needs 3.12)
#   NO_INSTALL=1    do not apt-get install mrtrix3 (its rows are then left out if absent)
#
# Sets up MRtrix3 (Debian package mrtrix3, for dwi2adc) and, in WORKDIR/venv, osipy and DIPY
# from PyPI; writes the 128×128×30 × 7 DWI and the 128×128×25 × 60 DSC phantoms with
# `paramap synth` and gunzips them to .nii; then benches/peers/peers.py runs every command once
# per round, the order reversed every other round, and prints medians, ranges, ratios and peak
# RSS (/usr/bin/time -v). Measure on an idle machine; the printout names the machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
rounds=${1:-5}
work=${2:-$(mktemp -d /tmp/paramap-peers.XXXXXX)}
mkdir -p "$work"
paramap=${PARAMAP:-$repo/target/release/paramap}
if [ ! -x "$paramap" ]; then
  (cd "$repo" && cargo build --release)
fi
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time; Debian package 'time')" >&2; exit 1; }

# MRtrix3 from Debian.
if ! command -v dwi2adc >/dev/null && [ -z "${NO_INSTALL:-}" ] && command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y --no-install-recommends mrtrix3 >/dev/null
  else sudo apt-get install -y --no-install-recommends mrtrix3 >/dev/null; fi
fi

# osipy and DIPY in a throwaway venv (osipy 0.1.4 needs Python >= 3.12).
if [ ! -x "$work/venv/bin/python" ]; then
  py=${PYTHON:-}
  if [ -z "$py" ]; then
    for c in python3.13 python3.12 python3 $(ls -d "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3 2>/dev/null); do
      if "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
        py=$c; break
      fi
    done
  fi
  if [ -n "$py" ]; then
    "$py" -m venv "$work/venv"
    "$work/venv/bin/pip" install -q "osipy==${OSIPY_VERSION:-0.1.4}" dipy nibabel
  else
    echo "no Python >= 3.12 found (set PYTHON=...): the osipy and DIPY rows are left out" >&2
  fi
fi

# The same inputs for every tool, as .nii (neither side pays for gzip on reading).
if [ ! -f "$work/dwi/nifti/dwi.nii" ]; then
  "$paramap" synth dwi -o "$work/dwi" --size 128x128x30 --snr 50 --force >/dev/null
  gunzip -kf "$work/dwi/nifti/dwi.nii.gz"
fi
if [ ! -f "$work/dsc/nifti/dsc.nii" ]; then
  "$paramap" synth dsc -o "$work/dsc" --size 128x128x25 --snr 50 --force >/dev/null
  gunzip -kf "$work/dsc/nifti/dsc.nii.gz"
fi

venv_py=""
[ -x "$work/venv/bin/python" ] && venv_py="$work/venv/bin/python"
exec python3 "$here/peers.py" --rounds "$rounds" --work "$work" --paramap "$paramap" \
  ${venv_py:+--venv-python "$venv_py"}
