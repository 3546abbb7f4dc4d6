#!/usr/bin/env bash
# Installs the Debian packages mmcompute needs, only those missing (sourced by run.sh and
# test.sh). Needs root or sudo only when something is missing.
set -euo pipefail

MMC_PACKAGES=(
  cmake ninja-build g++ libgtest-dev libbenchmark-dev nodejs libcli11-dev nlohmann-json3-dev
  libeigen3-dev libboost-dev libxxhash-dev pkg-config libhdf5-dev hdf5-tools zlib1g-dev
  libzstd-dev libblosc-dev liblzf-dev libisal-dev libdeflate-dev hdf5-filter-plugin openmpi-bin libopenmpi-dev python3-numpy
  python3-h5py python3-zarr python3-joblib python3-dask python3-matplotlib clang-14
  libclang-rt-14-dev ccache pybind11-dev python3-dev python3-pytest python3-tqdm procps python3-xarray python3-h5netcdf
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

# The compiler launcher arguments for cmake: ccache when installed (a fresh clone gains nothing,
# every later run of the scripts recompiles only what changed since any earlier one).
# CCACHE_DISABLE=1 in the environment turns it off without reconfiguring.
mmc_launcher_args() {
  if command -v ccache >/dev/null; then
    echo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache
  fi
}

# mmc_configure DIR CMAKE_ARGS...: configures DIR with Ninja (and ccache) once.
mmc_configure() {
  local dir="$1"
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    # shellcheck disable=SC2046  # two words or none
    cmake -S . -B "$dir" -G Ninja $(mmc_launcher_args) "$@"
  fi
}

# The sanitizer and fuzz builds compile at -O1 with line tables only (-g1): the sanitizers'
# reports keep file:line, and the builds cost far less than at RelWithDebInfo's -O2 -g
# (docs/ARCHITECTURE.md, "Build and test time"). NDEBUG as in RelWithDebInfo.
MMC_SANITIZER_FLAGS=(-DCMAKE_BUILD_TYPE=RelWithDebInfo
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG")

# mmc_build DIR CMAKE_ARGS...: configures DIR once, then builds what is out of date.
mmc_build() {
  mmc_configure "$@"
  cmake --build "$1"
}
