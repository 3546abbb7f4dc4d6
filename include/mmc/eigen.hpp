// Eigen views of a slice (header-only; include it when your code uses Eigen 3): no copy, the
// map points at the slice's elements.
//
//   mmc::map_slices<float, double>(cube, [](const mmc::SliceView<float>& s) {
//     return mmc::as_matrix(s).template cast<double>().rowwise().mean().maxCoeff();
//   });
#pragma once

#include <Eigen/Core>

#include "mmc/slices.hpp"

namespace mmc {

// The slice as a rows() x cols() row-major matrix (the last axis is the columns).
template <class T>
Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> as_matrix(
    const SliceView<T>& s) {
  return {s.data, static_cast<Eigen::Index>(s.rows()), static_cast<Eigen::Index>(s.cols())};
}

// The slice's elements as one column array, in C order.
template <class T>
Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> as_array(const SliceView<T>& s) {
  return {s.data, static_cast<Eigen::Index>(s.size())};
}

}  // namespace mmc
