#!/usr/bin/env bash
# GPU benchmarks on one CUDA machine, sized to finish in under 8 minutes on an H100 or H200:
# MFU of full fine-tuning (~1.1B shape), LoRA tokens/s of ftx (with and without Liger) over a plain
# TRL script, QLoRA peak memory on an 8B shape, and full fine-tuning of the ~1.1B shape under
# DeepSpeed ZeRO-3 ([distributed] strategy = "deepspeed", through `ftx run --nproc-per-node <GPUs>`;
# it needs the deepspeed package in the image: DeepSpeed ships no binary wheel for .whl/, and the
# line reports "skipped" without it). From the repo root:
#
#   bench/gpu_wheels.sh        # once, where pip reaches the registry: wheels the GPU image lacks -> .whl/
#   bench/gpu.sh               # on the GPU machine (no network needed); extra arguments go to bench/gpu.py
#   bench/gpu.sh --smoke       # the same code with tiny shapes, on any machine
#
# It installs the carried wheels and this checkout's ftx distributions into the machine's Python
# (no dependency resolution, nothing downloaded), prints the versions it measures with, runs
# bench/gpu.py, and leaves the figures in bench/results.json (and $OUT/gpu-results.json when $OUT
# is set). Keep the figures in bench/RESULTS.md with the GPU named.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: no NVIDIA GPU visible"
if [[ " $* " != *" --smoke "* ]]; then  # a smoke run uses the environment as it is
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade .whl/*.whl
  fi
  "$PY" -m pip install --quiet --no-index --no-deps --no-build-isolation \
    -e hookspecs -e . -e plugins/full -e plugins/sft -e plugins/formats -e plugins/eval-basic -e plugins/lora -e plugins/liger
fi

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export FTX_HOME="${FTX_HOME:-$(mktemp -d)}"
"$PY" - <<'PY'
import importlib
for name in ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "bitsandbytes", "liger_kernel", "triton",
             "deepspeed", "ftx"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except Exception as exc:  # report and go on: the part that needs it records its own failure
        print(f"{name}: not importable ({type(exc).__name__}: {exc})")
PY
cd bench
exec timeout "${FTX_GPU_BENCH_TIMEOUT:-540}" "$PY" gpu.py "$@"
