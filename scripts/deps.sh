#!/usr/bin/env bash
# Installs the Debian packages mmcompute needs, only those missing (sourced by run.sh and
# test.sh). Needs root or sudo only when something is missing.
set -euo pipefail

MMC_PACKAGES=(
  cmake ninja-build g++ libgtest-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev
  libeigen3-dev libboost-dev libxxhash-dev pkg-config libhdf5-dev hdf5-tools zlib1g-dev
  libzstd-dev libblosc-dev openmpi-bin libopenmpi-dev python3-numpy
  python3-h5py python3-zarr python3-joblib python3-dask python3-matplotlib clang-14
  libclang-rt-14-dev
)

mmc_install_deps() {
  local missing=() pkg
  for pkg in "${MMC_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  echo "deps: installing ${missing[*]}" >&2
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
}

# mmc_build DIR CMAKE_ARGS...: configures DIR with Ninja once, then builds what is out of date.
mmc_build() {
  local dir="$1"
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    cmake -S . -B "$dir" -G Ninja "$@"
  fi
  cmake --build "$dir"
}
