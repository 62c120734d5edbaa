#!/usr/bin/env bash
# One GPU check of bimodal, <= 9 minutes on one H100: device, CUDA tests, `bimodal bench` at the
# paper-like sizes with TF32 and with bf16, the row-space SVM C search on the GPU, small RBM steps
# (bench stage `steps`), `bimodal reproduce paper_avletters` on the GPU, and the same runs packed
# on the one GPU as Ray tasks (`--workers 3 --gpus-per-run 0.33`; needs Ray). Writes ONE JSON with
# the wall time, status, throughput, fraction of the measured matmul rate, peak GPU memory and mean
# GPU utilisation of every stage.
#
# Usage (from the root of a clean checkout):
#   benchmarks/device_check.sh [OUT_JSON]
# OUT_JSON defaults to $OUT/device_check.json when $OUT is set, else ./device_check.json.
#
# Environment (all optional):
#   AVLETTERS     AVLetters root (default: ./data/avletters if present — /data/ is git-ignored, so a
#                 copy carried there travels with the working tree — else ../shared/data/avletters)
#   CHECK_DEVICE  torch device (default cuda)
#   CHECK_CONFIG  reproduce config (default paper_avletters); CHECK_SET: extra `--set k=v` words for
#                 it (default: data.root from AVLETTERS). CHECK_QUICK=1 runs `bench --quick`.
#                 CPU plumbing test: CHECK_DEVICE=cpu CHECK_QUICK=1 CHECK_CONFIG=demo
#                 CHECK_SET="--set experiment.seeds=[0] ..." benchmarks/device_check.sh /tmp/x.json
#   CHECK_BUDGET  total seconds for all stages (default 530); each stage also has its own cap
#   CHECK_PACK    runs packed on the device in the `packing` stage (default 3: --gpus-per-run 1/3)
#   PYTHON        interpreter (default python3)
#
# Dependencies. The script installs nothing by default: the GPU machine has no internet, so pip
# cannot fetch torch (~2.5 GB of CUDA wheels) or anything else there. It uses the interpreter's
# preinstalled torch when `python3 -c 'import torch'` works, and runs the code from this checkout
# with PYTHONPATH (no `pip install -e .`, which would try to resolve dependencies online). If torch
# or another dependency (numpy, scipy, scikit-learn, tqdm, pytest; soundfile and opencv for the
# AVLetters reader) is missing, the `env` stage lists it and the stages that need it are
# recorded as failed. To bring them, build a wheelhouse on a connected machine with the same
# Python (3.12) and platform:
#   pip download --dest wheels torch numpy scipy scikit-learn tqdm pytest soundfile opencv-python-headless
# carry it under an ignored path (e.g. ./data/wheels; torch alone is ~2.5 GB, so only where the
# transfer allows) and set WHEELHOUSE=./data/wheels: the script then runs
# `pip install --no-index --find-links $WHEELHOUSE ...` first (a few minutes, outside the budget).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
PY=${PYTHON:-python3}
DEV=${CHECK_DEVICE:-cuda}
BUDGET=${CHECK_BUDGET:-530}
PACK=${CHECK_PACK:-3}
CONFIG=${CHECK_CONFIG:-paper_avletters}
QUICK=${CHECK_QUICK:+--quick}
if [ -n "${1:-}" ]; then JSON=$1; elif [ -n "${OUT:-}" ]; then JSON=$OUT/device_check.json; else JSON=$ROOT/device_check.json; fi
if [ -z "${AVLETTERS:-}" ]; then
  if [ -d "$ROOT/data/avletters" ]; then AVLETTERS=$ROOT/data/avletters; else AVLETTERS=$ROOT/../shared/data/avletters; fi
fi
SET=${CHECK_SET:---set data.root=\"$AVLETTERS\"}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/device_check.XXXXXX")
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" BIMODAL_CACHE=${BIMODAL_CACHE:-$WORK/cache} PYTHONUNBUFFERED=1
START=$(date +%s)
: > "$WORK/stages.tsv"

if [ -n "${WHEELHOUSE:-}" ] && ! $PY -c 'import torch' 2>/dev/null; then
  echo "== installing from $WHEELHOUSE (offline)"
  $PY -m pip install --no-index --find-links "$WHEELHOUSE" torch numpy scipy scikit-learn tqdm pytest soundfile \
    opencv-python-headless 2>&1 | tail -3
fi

# stage NAME CAP_SECONDS COMMAND...: runs COMMAND under `timeout`, capped by what is left of the
# budget; logs to $WORK/NAME.log; samples GPU memory meanwhile; a failure is recorded, not fatal.
stage() {
  local name=$1 cap=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - START) ))
  [ "$cap" -gt "$left" ] && cap=$left
  if [ "$cap" -lt 5 ]; then
    printf '%s\tskipped\t0\t0\n' "$name" >> "$WORK/stages.tsv"; echo "== $name: skipped (budget spent)"; return
  fi
  echo "== $name (at most ${cap}s): $*"
  local smi_pid=""
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader,nounits -lms 500 \
      > "$WORK/$name.mem" 2>/dev/null &
    smi_pid=$!
  fi
  local t0 rc secs
  t0=$(date +%s%N)
  timeout --kill-after=10 "$cap" "$@" > "$WORK/$name.log" 2>&1
  rc=$?
  secs=$(( ($(date +%s%N) - t0) / 1000000 ))  # milliseconds
  [ -n "$smi_pid" ] && kill "$smi_pid" 2>/dev/null
  local status=ok
  [ "$rc" -ne 0 ] && status=failed
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && status=timeout
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$secs" >> "$WORK/stages.tsv"
  tail -n 25 "$WORK/$name.log"
  echo "== $name: $status (rc $rc, ${secs} ms)"
}

stage env 30 bash -c "nvidia-smi; $PY - <<'EOF'
import importlib, json, platform, sys
info = {'python': sys.version.split()[0], 'platform': platform.platform()}
missing = []
for m in ('torch', 'numpy', 'scipy', 'sklearn', 'tqdm', 'pytest', 'soundfile', 'cv2', 'matplotlib'):
    try:
        info[m] = getattr(importlib.import_module(m), '__version__', 'present')
    except Exception as e:
        missing.append(m)
info['missing'] = missing
try:
    import torch
    info['cuda_available'] = torch.cuda.is_available()
    if torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name(0)
        info['cuda'] = torch.version.cuda
except Exception:
    pass
print('ENV_JSON ' + json.dumps(info))
EOF"

stage cuda_tests 90 $PY -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider

stage bench_tf32 150 $PY -m benchmarks.run $QUICK --device "$DEV" --matmul-precision high \
  --stages rbm,gaussian,autoencoder,ttq --out "$WORK/bench_tf32.json"

stage bench_bf16 60 $PY -m benchmarks.run $QUICK --device "$DEV" --matmul-precision high --autocast-dtype bfloat16 \
  --stages gaussian,autoencoder --out "$WORK/bench_bf16.json"

stage bench_svm 45 $PY -m benchmarks.run $QUICK --device "$DEV" --stages svm --no-svm-reference \
  --out "$WORK/bench_svm.json"

stage bench_steps 60 $PY -m benchmarks.run $QUICK --device "$DEV" --stages steps --repeats 3 \
  --out "$WORK/bench_steps.json"

# shellcheck disable=SC2086  # CHECK_SET is a list of words on purpose
stage reproduce 240 $PY -m bimodal reproduce "$CONFIG" --device "$DEV" --out "$WORK/reproduce" $SET

# The same runs as Ray tasks packed on the one device: wall time and utilisation against `reproduce`.
PACK_GPU=""
case "$DEV" in cuda*) PACK_GPU="--gpus-per-run $($PY -c "print(round(1 / $PACK, 3))")";; esac
# shellcheck disable=SC2086
stage packing 150 $PY -m bimodal reproduce "$CONFIG" --device "${DEV%%:*}" --workers "$PACK" $PACK_GPU \
  --out "$WORK/packing" $SET
# a driver stopped by the cap can leave its local Ray behind
$PY -m ray.scripts.scripts stop --force > /dev/null 2>&1 || true

# ---------------------------------------------------------------- one JSON
mkdir -p "$(dirname "$JSON")"
$PY - "$WORK" "$JSON" "$(( $(date +%s) - START ))" "$CONFIG" "$AVLETTERS" <<'EOF'
import json, os, sys

work, out, total, config, avletters = sys.argv[1:6]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def gpu_samples(name, column):
    """nvidia-smi samples of one column (0: memory used MB, 1: utilisation %) during a stage."""
    try:
        rows = [line.split(",") for line in open(os.path.join(work, name + ".mem")) if line.strip()]
        return [float(r[column]) for r in rows if len(r) > column and r[column].strip()]
    except (OSError, ValueError):
        return []


def peak_mem(name):
    vals = gpu_samples(name, 0)
    return max(vals) if vals else None


def mean_util(name):
    vals = gpu_samples(name, 1)
    return sum(vals) / len(vals) if vals else None


def tail(name, n=15):
    try:
        return open(os.path.join(work, name + ".log"), errors="replace").read().splitlines()[-n:]
    except OSError:
        return []


result = {"wall_seconds_total": int(total), "config": config, "avletters": avletters, "stages": {}}
for line in open(os.path.join(work, "stages.tsv")):
    name, status, rc, secs = line.rstrip("\n").split("\t")
    st = {"status": status, "rc": int(rc), "wall_seconds": int(secs or 0) / 1000.0,
          "peak_gpu_memory_used_mb": peak_mem(name), "mean_gpu_utilisation_pct": mean_util(name)}
    if status != "ok":
        st["log_tail"] = tail(name)
    result["stages"][name] = st

for line in tail("env", 400):
    if line.startswith("ENV_JSON "):
        result["env"] = json.loads(line[len("ENV_JSON "):])

for name in ("bench_tf32", "bench_bf16", "bench_svm", "bench_steps"):
    b = load(os.path.join(work, name + ".json"))
    if not b:
        continue
    rate = b.get("matmul_gflops")
    rows = []
    for r in b.get("rbm_vs_sklearn", []) + b.get("gaussian_rbm", []) + \
            ([b["bimodal_autoencoder"]] if b.get("bimodal_autoencoder") else []):
        rows.append({"model": r.get("model"), "batch_size": r.get("batch_size"), "device": r.get("device", b["device"]),
                     "examples_per_s": r.get("examples_per_s"), "gflops": r.get("gflops"),
                     "matmul_fraction": r["gflops"] / rate if rate and r.get("gflops") else None,
                     "speedup_vs_sklearn": r.get("speedup_vs_sklearn"),
                     "peak_memory_mb": r.get("peak_cuda_allocated_mb", r.get("peak_rss_mb")),
                     "peak_memory_kind": "cuda allocated" if "peak_cuda_allocated_mb" in r else "process peak RSS"})
    entry = {"device": b.get("device"), "gpu_name": b.get("gpu_name"), "fast_options": b.get("fast_options"),
             "matmul_gflops": rate, "throughput": rows, "stage_seconds": b.get("stage_seconds")}
    if b.get("rbm_time_to_quality"):
        q = dict(b["rbm_time_to_quality"])
        q.pop("curve", None)
        entry["rbm_time_to_quality"] = q
    if b.get("svm_c_search"):
        entry["svm_c_search"] = b["svm_c_search"]
    if b.get("small_steps"):
        z = dict(b["small_steps"])
        z["time_to_quality"] = {k: v for k, v in z["time_to_quality"].items() if k != "curve"}
        entry["small_steps"] = z
    result["stages"].setdefault(name, {})["bench"] = entry

for name in ("reproduce", "packing"):
    rep = load(os.path.join(work, name, "results.json"))
    if rep:
        result["stages"].setdefault(name, {})["results"] = {
            "timings": rep.get("timings"), "summary": rep.get("summary"), "n_utterances": rep.get("n_utterances"),
            "execution": rep.get("execution")}
seq, packed = (result["stages"].get(n, {}) for n in ("reproduce", "packing"))
if seq.get("status") == "ok" and packed.get("status") == "ok":
    result["packing_speedup"] = seq["wall_seconds"] / packed["wall_seconds"]

tmp = out + ".tmp"
with open(tmp, "w") as f:
    json.dump(result, f, indent=1, default=str)
os.replace(tmp, out)
print(json.dumps({k: {"status": v.get("status"), "wall_seconds": v.get("wall_seconds")}
                  for k, v in result["stages"].items()}, indent=1))
print("wrote", out)
EOF
echo "device check: $(( $(date +%s) - START ))s in all; work files in $WORK"
