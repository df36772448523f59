#!/usr/bin/env bash
# Fetch, where pip can reach the registry, the wheels bench/gpu.sh installs on a GPU machine that
# has torch (and transformers' usual company) but no network: into .whl/ (git-ignored), for the
# GPU image's Python (3.12 by default; set GPU_PYTHON=3.11 ...). Prints their total size, which
# must stay under what the machine's transfer allows beside the checkout (64 MiB there).
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER="${GPU_PYTHON:-3.12}"
WHEELS=(
  trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19   # the TRL baseline and ftx's data path
  bitsandbytes==0.50.2                                            # QLoRA
  liger-kernel==0.8.5                                             # [[kernels]] use = "liger" (Triton comes with torch)
  transformers==5.24.0 peft==0.21.2                               # the versions ftx is tested with
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 tomli-w==1.2.0
)
mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "${WHEELS[@]}"
ls -1 .whl
du -ch .whl/*.whl | tail -1
