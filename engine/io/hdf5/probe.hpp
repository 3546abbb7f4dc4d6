// Reading untrusted HDF5 metadata in a forked child first (see probe.cpp).
#pragma once

#include <functional>
#include <string>

namespace mmc::detail {

// Runs `work` (libhdf5 calls on `file` only) in a forked child limited to 512 MiB more address
// space and 20 s. Returns when it succeeds; rethrows the mmc::Error it threw; throws
// Error(Corrupt) "FILE: libhdf5 crashed reading it (...; damaged file?)" when the child died
// by a signal. The child leaves with _exit. Call it before opening HDF5 ids in this process
// and while no other thread is inside libhdf5 (a fork inside the library's global lock would
// leave the child waiting for it until its time limit). MMC_HDF5_PROBE=0 turns it off.
void probe_hdf5(const std::string& file, const std::function<void()>& work);

}  // namespace mmc::detail
