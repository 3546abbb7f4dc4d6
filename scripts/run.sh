#!/usr/bin/env bash
# Quick start: installs what is missing, builds mmcompute (Release, build/) and its Python module
# (installed for /usr/bin/python3), generates the sample satellite cube data/sat_images.u8 if
# absent, and prints its per-image mean intensities.
# MMC_SAMPLE_SHAPE overrides the cube's shape (default 2048,1024,1024: 2 GiB of u8).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

mmc_install_deps
if [ ! -f build/build.ninja ]; then
  # The same configuration as scripts/test.sh, so either may create build/ first.
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMMC_BUILD_BENCHMARKS=ON
fi
cmake --build build --target mmcompute mmc_python_core
# `import mmcompute` for Debian's python3, with no PYTHONPATH: the package goes where it finds
# local packages (/usr/local/lib/python3.X/dist-packages).
cmake --install build --component python >/dev/null

shape="${MMC_SAMPLE_SHAPE:-2048,1024,1024}"
cube=data/sat_images.u8
bytes=1
for extent in ${shape//[,x]/ }; do
  bytes=$((bytes * extent))
done
if [ ! -f "$cube" ] || [ "$(stat -c %s "$cube")" -ne "$bytes" ]; then
  mkdir -p data
  build/tools/mmcompute gen "$cube" --shape "$shape" --dtype u8 --jobs 2
fi
build/tools/mmcompute reduce "$cube" --dtype u8 --shape "$shape" --op mean --jobs 2
