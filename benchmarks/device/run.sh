#!/usr/bin/env bash
# Run one GPU plan from the bundle alone (no ../shared, no network):
#
#   python benchmarks/device/pack.py <plan>           # here, once: builds benchmarks/device/bundle
#   bash benchmarks/device/run.sh <plan> [--smoke]    # on the GPU machine (or here, --smoke)
#
# Plans: perf, twins_rift, cartl_study, new_methods (benchmarks/device/plans.py). The wheels
# are installed into a temporary site directory that comes first on PYTHONPATH, the data and
# models are unpacked into a temporary folder, and the plan runs the same lit-robust configs
# and benchmark scripts users run.
# Results (JSON + markdown, at most 8 files) go to $OUT (default benchmarks/device/out).
# --smoke runs the plan's pipeline at tiny sizes on the CPU in under 3 minutes.
# Environment: LIT_ROBUST_BUNDLE (default benchmarks/device/bundle), PYTHON (default python3).
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: bash benchmarks/device/run.sh <perf|twins_rift|cartl_study|new_methods> [--smoke]" >&2
  exit 2
fi
plan=$1
shift
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bundle=${LIT_ROBUST_BUNDLE:-$repo/benchmarks/device/bundle}
python=${PYTHON:-python3}
out=${OUT:-$repo/benchmarks/device/out}
if [[ ! -f $bundle/manifest.json ]]; then
  echo "run.sh: error: no bundle at $bundle; build it with: python benchmarks/device/pack.py $plan" >&2
  exit 2
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/lit_robust_plan.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --target "$work/site" "$bundle"/wheels/*.whl
export PYTHONPATH="$work/site:$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
cd "$repo"
"$python" benchmarks/device/run_plan.py "$plan" --bundle "$bundle" --work "$work" \
  --out "$out" "$@"
