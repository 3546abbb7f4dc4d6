// Writing results and arrays to files: atomically (temp name + rename) so a failed run never
// leaves a partial file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mmc/array.hpp"

namespace mmc {

// A file written under a temporary name in the target's folder and renamed into place by
// commit(). Destroying it uncommitted removes the temporary. Move-only.
class AtomicFile {
 public:
  explicit AtomicFile(std::string target);  // creates the temporary; throws Error(Io)
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  int fd() const noexcept { return fd_; }
  const std::string& temp_path() const noexcept { return temp_; }
  const std::string& target() const noexcept { return target_; }
  void write(const void* data, std::size_t size);  // throws Error(Io)
  // fsyncs (unless durable is false), closes and renames onto the target. durable=false is
  // for data that can be made again (a sample cube): the rename still makes the file appear
  // whole or not at all to other processes, but a machine crash may leave it empty.
  // Throws Error(Io).
  void commit(bool durable = true);

 private:
  std::string target_;
  std::string temp_;
  int fd_ = -1;
  bool committed_ = false;
};

// Removes every temporary AtomicFile still uncommitted (async-signal-unsafe; for the CLI's
// interrupt path).
void remove_pending_atomic_files() noexcept;

enum class OutputFormat : std::uint8_t { Npy, Npz, Csv, Json };
// By extension: .npy, .npz, .csv, .json. Throws Error(InvalidArgument) for anything else.
OutputFormat output_format_for(const std::string& path);

// One of several arrays a sink writes under names (an .npz member, a JSON key, a CSV column):
// `bytes` holds the elements of `shape` in C order, as `dtype` says.
struct NamedArray {
  std::string name;
  DType dtype;
  Shape shape;
  std::span<const std::byte> bytes;
};

// A sink takes an array as it sits in memory: `bytes` holds the elements of `shape` in C order,
// as `dtype` says (a ReduceResult passes its dtype, shape and data). Both functions throw
// Error(InvalidArgument) when the byte count is not the shape's element count times the item
// size.

// Writes the array to `path` in the format of its extension, atomically. An empty array (an
// extent 0) is a CSV of no rows and JSON "data": [] (its shape is in "shape").
// An .npz holds the array as its one member "arr_0" (np.load's name for an unnamed array);
// write_results names them. `extra`: more keys of the JSON object beside dtype, shape and data
// (a histogram's bin_edges, as a list), ignored by the other formats.
void write_result(DType dtype, const Shape& shape, std::span<const std::byte> bytes,
                  const std::string& path, const std::vector<NamedArray>& extra = {});

// Writes several arrays to `path` atomically: .npz as np.savez does (member NAME.npy each,
// stored uncompressed, ZIP64 past 4 GiB), .json as an object keyed by name whose values are
// write_result's objects, .csv as one column per array under a header row of the names (every
// array must hold as many elements, each column in C order). Throws Error(InvalidArgument) for
// .npy (one array only), for a CSV of arrays of different sizes and for a repeated name.
void write_results(const std::vector<NamedArray>& arrays, const std::string& path);
// The CSV form of write_results, for stdout.
std::string format_results_csv(const std::vector<NamedArray>& arrays);
// The array as text for stdout: one value per line for 1-d, the scalar for 0-d, rows of
// space-separated values (last axis) for n-d. Floats with 17 significant digits. An empty
// array is one line, "[] (empty result of shape (3, 0), f8)".
std::string format_result_text(DType dtype, const Shape& shape, std::span<const std::byte> bytes);

}  // namespace mmc
