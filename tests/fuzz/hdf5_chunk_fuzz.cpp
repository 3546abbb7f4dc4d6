// Fuzz target: our HDF5 chunk decoding (H5Dread_chunk bytes through the shuffle, deflate and
// Fletcher-32 pipeline of engine/io/hdf5/array.cpp) and the open-and-read path around it.
//
// libhdf5 1.10.8 crashes on some damaged metadata (issue 15, section 4), which we cannot fix and
// would report as findings that hide ours. So the input never reaches libhdf5's parsers: the
// target writes a well-formed file with libhdf5 itself and stores the input's bytes as the raw
// (still filtered) bytes of one chunk with H5Dwrite_chunk, then opens and reads the dataset
// through mmc. Everything libhdf5 parses is metadata it wrote; every hostile byte goes to our
// decoders. Layout of the input:
//   byte 0: bit 0 shuffle, bit 1 deflate, bit 2 Fletcher-32; bits 3-5 their order (6 ways)
//   byte 1: the element type (u8, i16, u32, f32, f64, i64)
//   byte 2: the chunk shape, 1 + low nibble by 1 + high nibble (dataset: one more each way)
//   byte 3: the chunk's filter mask (a set bit i: filter i was skipped when writing)
//   the rest: the stored bytes of chunk (0, 0)
#include <hdf5.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "mmc/error.hpp"

namespace {

// Closes an HDF5 identifier of this harness at scope exit.
struct Id {
  hid_t id;
  herr_t (*close)(hid_t);
  ~Id() {
    if (id >= 0) close(id);
  }
};

hid_t element_type(std::uint8_t choice) {
  const std::array<hid_t, 6> types = {H5T_NATIVE_UINT8, H5T_NATIVE_INT16,  H5T_NATIVE_UINT32,
                                      H5T_NATIVE_FLOAT, H5T_NATIVE_DOUBLE, H5T_NATIVE_INT64};
  return types[choice % types.size()];
}

// Adds the chosen filters to dcpl in the chosen order; false if libhdf5 refuses them.
bool add_filters(hid_t dcpl, std::uint8_t choice) {
  static constexpr std::array<std::array<int, 3>, 6> kOrders = {
      {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}};
  for (int filter : kOrders[((choice >> 3) & 7) % kOrders.size()]) {
    if (((choice >> filter) & 1) == 0) continue;
    herr_t status = 0;
    if (filter == 0) status = H5Pset_shuffle(dcpl);
    if (filter == 1) status = H5Pset_deflate(dcpl, 4);
    if (filter == 2) status = H5Pset_fletcher32(dcpl);
    if (status < 0) return false;
  }
  return true;
}

// Writes file with dataset /d whose chunk (0, 0) holds `stored` as its raw bytes.
bool write_file(const std::string& file, const std::uint8_t* head, const std::uint8_t* stored,
                std::size_t n) {
  const hsize_t chunk[2] = {1u + (head[2] & 15u), 1u + (head[2] >> 4)};
  const hsize_t shape[2] = {chunk[0] + 1, chunk[1] + 1};
  const Id f{H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose};
  const Id space{H5Screate_simple(2, shape, nullptr), H5Sclose};
  const Id dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
  if (f.id < 0 || space.id < 0 || dcpl.id < 0 || H5Pset_chunk(dcpl.id, 2, chunk) < 0 ||
      !add_filters(dcpl.id, head[0])) {
    return false;
  }
  const Id d{
      H5Dcreate2(f.id, "d", element_type(head[1]), space.id, H5P_DEFAULT, dcpl.id, H5P_DEFAULT),
      H5Dclose};
  const hsize_t origin[2] = {0, 0};
  return d.id >= 0 && H5Dwrite_chunk(d.id, H5P_DEFAULT, head[3], origin, n, stored) >= 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  // No probe child: libhdf5 only parses metadata it wrote itself here, and inside the probe a
  // sanitizer report from our own code would come back as Error(Corrupt), which this target
  // takes for the expected outcome (and a fork per input would slow the run tenfold).
  static const bool no_probe = ::setenv("MMC_HDF5_PROBE", "0", 1) == 0;
  (void)no_probe;
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const std::string file = mmc::fuzz::scratch_dir() + "/input.h5";
  if (!write_file(file, data, data + 4, size - 4)) return 0;
  try {
    mmc::fuzz::read_bounded(mmc::open_array(file + ":/d"));
  } catch (const mmc::Error&) {
    // A damaged chunk is refused with Error(Corrupt): the expected outcome.
  }
  return 0;
}
