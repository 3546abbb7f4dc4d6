// Everything of mmcompute's public API.
#pragma once

#include "mmc/array.hpp"
#include "mmc/cache.hpp"
#include "mmc/chunked.hpp"
#include "mmc/convert.hpp"
#include "mmc/dtype.hpp"
#include "mmc/error.hpp"
#include "mmc/generate.hpp"
#include "mmc/mapped_file.hpp"
#include "mmc/output.hpp"
#include "mmc/parallel.hpp"
#include "mmc/pool.hpp"
#include "mmc/reduce.hpp"
#include "mmc/shared.hpp"
#include "mmc/slices.hpp"
#include "mmc/source.hpp"
