#!/usr/bin/env bash
# One AFL++ campaign on one fuzz target: seeds from tests/data/fuzz_seeds, findings in
# fuzz/out/TARGET (crashes/, hangs/, queue/, fuzzer_stats).
#   fuzz/campaign.sh TARGET [EXECUTIONS] [MAX_SECONDS]
# TARGET: dicom_file | dicom_folder | nifti | sidecars | c_store.
# Stops after EXECUTIONS (default 1000000) or MAX_SECONDS (default 3600), whichever is first.
# Needs cargo-afl (`cargo install cargo-afl`, then `cargo afl config --build`); builds the
# targets with `cargo afl build --release` in fuzz/.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?"which target: dicom_file | dicom_folder | nifti | sidecars | c_store"}
execs=${2:-1000000}
seconds=${3:-3600}
seeds=../tests/data/fuzz_seeds
in=out/seeds/$target
rm -rf "$in" "out/$target"
mkdir -p "$in"
case $target in
  dicom_file) cp "$seeds"/*.dcm "$in"/ ;;
  dicom_folder) cp "$seeds"/folder/* "$in"/ ;;
  nifti | sidecars | c_store) cp "$seeds/$target"/* "$in"/ ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
cargo afl build --release --bin "$target"
# A shared machine: no core pinning, no CPU governor check, crashes kept without a core
# pattern change; the plain status lines instead of the screen.
export AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
cargo afl fuzz -i "$in" -o "out/$target" -t 2000 -E "$execs" -V "$seconds" \
  "target/release/$target"
grep -E '^(execs_done|execs_per_sec|corpus_count|edges_found|total_edges|bitmap_cvg|saved_crashes|saved_hangs|run_time)' \
  "out/$target/default/fuzzer_stats"
