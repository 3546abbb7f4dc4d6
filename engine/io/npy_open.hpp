// Opening a .npy file through a descriptor the caller already holds (open_array read its magic
// from it), so the file is opened and mapped once.
#pragma once

#include <string>

#include "mmc/source.hpp"

namespace mmc::detail {

// open_npy over `fd`, an open descriptor of `path` (read-only for r and c, read-write for r+;
// not w+): reads the header with pread and maps the data from the same descriptor, which stays
// the caller's. Same errors as open_npy.
Source open_npy(int fd, const std::string& path, MapMode mode);

}  // namespace mmc::detail
