// RAII owners of libhdf5 ids (hid_t), and turning HDF5's error stack into mmc::Error text.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <utility>

#include "mmc/error.hpp"

namespace mmc::detail {

// Turns off libhdf5's printing of its error stack to stderr for the calling thread. In the
// thread-safe build the setting is per thread, so every entry point calls this first; after
// the first call in a thread it costs a thread_local test.
inline void hdf5_quiet() noexcept {
  thread_local bool quiet = false;
  if (!quiet) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    quiet = true;
  }
}

// The most specific message of the calling thread's HDF5 error stack ("truncated file: eof =
// ..."), or "no detail from libhdf5" when it is empty. Clears the stack.
inline std::string hdf5_error_detail() {
  std::string detail;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* e, void* data) -> herr_t {
        // Upward: entry 0 is the innermost failure, the last one the API call.
        if (n == 0 && e->desc != nullptr) *static_cast<std::string*>(data) = e->desc;
        return 0;
      },
      &detail);
  H5Eclear2(H5E_DEFAULT);
  return detail.empty() ? "no detail from libhdf5" : detail;
}

enum class Hdf5Kind : std::uint8_t {
  File,
  Group,
  Dataset,
  Dataspace,
  Datatype,
  PropertyList,
  Attribute
};

// The one owner of an HDF5 id; closed with the H5?close of its kind. Move-only. Not
// thread-safe (like any value type); ids themselves may be used from several threads (the
// library serializes calls).
class Hdf5Handle {
 public:
  Hdf5Handle() noexcept = default;
  // Takes ownership of `id` (the result of an H5*open/create/copy/get call), or throws
  // Error(code, what + ": " + the library's detail) when the call failed (id < 0).
  static Hdf5Handle adopt(hid_t id, Hdf5Kind kind, ErrorCode code, const std::string& what) {
    if (id < 0) throw_error(code, what + ": " + hdf5_error_detail());
    return Hdf5Handle(id, kind);
  }
  ~Hdf5Handle() { close(); }

  Hdf5Handle(const Hdf5Handle&) = delete;
  Hdf5Handle& operator=(const Hdf5Handle&) = delete;
  Hdf5Handle(Hdf5Handle&& other) noexcept
      : id_(std::exchange(other.id_, H5I_INVALID_HID)), kind_(other.kind_) {}
  Hdf5Handle& operator=(Hdf5Handle&& other) noexcept {
    if (this != &other) {
      close();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
      kind_ = other.kind_;
    }
    return *this;
  }

  hid_t get() const noexcept { return id_; }
  bool valid() const noexcept { return id_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }

  // Closes the id now. Returns false when the library reported an error (the id is released
  // either way; the detail stays on the thread's error stack). Idempotent.
  bool close() noexcept {
    const hid_t id = std::exchange(id_, H5I_INVALID_HID);
    if (id < 0) return true;
    herr_t r = -1;
    switch (kind_) {
      case Hdf5Kind::File:
        r = H5Fclose(id);
        break;
      case Hdf5Kind::Group:
        r = H5Gclose(id);
        break;
      case Hdf5Kind::Dataset:
        r = H5Dclose(id);
        break;
      case Hdf5Kind::Dataspace:
        r = H5Sclose(id);
        break;
      case Hdf5Kind::Datatype:
        r = H5Tclose(id);
        break;
      case Hdf5Kind::PropertyList:
        r = H5Pclose(id);
        break;
      case Hdf5Kind::Attribute:
        r = H5Aclose(id);
        break;
    }
    return r >= 0;
  }

  // Drops the id without closing it: for a forked child holding ids its parent opened, whose
  // closing could flush or release file state the child does not own.
  void forget() noexcept { id_ = H5I_INVALID_HID; }

 private:
  Hdf5Handle(hid_t id, Hdf5Kind kind) noexcept : id_(id), kind_(kind) {}

  hid_t id_ = H5I_INVALID_HID;
  Hdf5Kind kind_ = Hdf5Kind::File;
};

}  // namespace mmc::detail
