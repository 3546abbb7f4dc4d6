// The planner: strategies, merging of contiguous axes, and task splitting.
#include "reduce/plan.hpp"

#include <gtest/gtest.h>

#include "mmc/error.hpp"

namespace mmc::detail {
namespace {

ArrayMeta cube(Order order, Shape shape = {16, 32, 64}) {
  return ArrayMeta::contiguous(DType(TypeId::U8), std::move(shape), order);
}

TEST(ReducePlan, PerSliceOfCCubeIsOneContiguousRunPerOutput) {
  const ReducePlan p = make_reduce_plan(cube(Order::C), {1, 2});
  EXPECT_TRUE(p.inner_reduced);
  ASSERT_EQ(p.reduced.size(), 1u);
  EXPECT_EQ(p.reduced[0].extent, 32 * 64);
  EXPECT_EQ(p.reduced[0].stride, 1);
  EXPECT_EQ(p.n_out, 16);
  EXPECT_EQ(p.n_red, 32 * 64);
  EXPECT_EQ(p.out_shape, (Shape{16}));
  EXPECT_EQ(p.n_tasks(), 1);  // 32 KiB of input fits one 8 MiB task
}

TEST(ReducePlan, AxisZeroOfCCubeAccumulatesAlongLines) {
  const ReducePlan p = make_reduce_plan(cube(Order::C), {0});
  EXPECT_FALSE(p.inner_reduced);
  EXPECT_EQ(p.line.extent, 32 * 64);  // the kept axes merge into one line
  EXPECT_EQ(p.line.out_stride, 1);
  EXPECT_TRUE(p.line_outer.empty());
  EXPECT_EQ(p.out_shape, (Shape{32, 64}));
}

TEST(ReducePlan, FortranCubePerSliceUsesLinesAlongAxisZero) {
  const ReducePlan p = make_reduce_plan(cube(Order::F), {1, 2});
  EXPECT_FALSE(p.inner_reduced);
  EXPECT_EQ(p.line.extent, 16);
  EXPECT_EQ(p.line.stride, 1);
  ASSERT_EQ(p.reduced.size(), 1u);  // axes 1 and 2 are contiguous in F order too
  EXPECT_EQ(p.reduced[0].extent, 32 * 64);
}

TEST(ReducePlan, SmallTasksSplitTheReducedAxisIntoPieces) {
  const ReducePlan p = make_reduce_plan(cube(Order::C), {1, 2}, 1000);
  EXPECT_EQ(p.pieces, 3);  // 2048-byte slices in pieces of at most ~1000 bytes
  EXPECT_EQ(p.piece_len, 683);
  EXPECT_EQ(p.units_per_task, 1);
  EXPECT_EQ(p.n_tasks(), 16 * 3);
}

TEST(ReducePlan, TaskSpansCoverExactlyTheSlicesOfTheTask) {
  const ReducePlan p = make_reduce_plan(cube(Order::C), {1, 2}, 4096);
  ASSERT_EQ(p.units_per_task, 2);
  std::int64_t first, last;
  p.task_span(3, &first, &last);
  EXPECT_EQ(first, 6 * 2048);
  EXPECT_EQ(last, 8 * 2048);
}

TEST(ReducePlan, ExtentOneAxesAreDroppedAndScalarsHaveOneOutput) {
  const ReducePlan p =
      make_reduce_plan(ArrayMeta::contiguous(DType(TypeId::F32), {1, 100, 1}), {0, 1, 2});
  EXPECT_EQ(p.n_out, 1);
  EXPECT_TRUE(p.out_shape.empty());
  EXPECT_EQ(p.n_red, 100);
  EXPECT_EQ(p.n_tasks(), 1);
}

TEST(ReducePlan, EmptyOutputsMeanNoTasks) {
  const ReducePlan p = make_reduce_plan(cube(Order::C, {0, 4, 4}), {1, 2});
  EXPECT_EQ(p.n_out, 0);
  EXPECT_EQ(p.n_tasks(), 0);
}

TEST(ReducePlan, RefusesAnEmptyGeometryWhoseOtherExtentsOverflow) {
  // Built by hand, as a caller of the public ArrayMeta may: contiguous() would refuse it.
  constexpr std::int64_t k62 = std::int64_t{1} << 62;
  ArrayMeta meta;
  meta.dtype = DType(TypeId::U16);
  meta.order = Order::F;
  meta.shape = {0, k62, k62};
  meta.strides = {2, 0, 0};
  EXPECT_THROW(make_reduce_plan(meta, {0}), Error);
  meta.order = Order::C;
  meta.shape = {k62, 0, k62};
  meta.strides = {0, 0, 2};
  EXPECT_THROW(make_reduce_plan(meta, {0}), Error);
}

TEST(ReducePlan, DoesNotDependOnAnythingButGeometry) {
  const ReducePlan a = make_reduce_plan(cube(Order::C, {100, 300, 7}), {0, 2}, 5000);
  const ReducePlan b = make_reduce_plan(cube(Order::C, {100, 300, 7}), {0, 2}, 5000);
  EXPECT_EQ(a.n_tasks(), b.n_tasks());
  EXPECT_EQ(a.pieces, b.pieces);
  EXPECT_EQ(a.units_per_task, b.units_per_task);
}

}  // namespace
}  // namespace mmc::detail
