// Hasher: the canonical encoding separates what must differ and merges what must not.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cache/cache_test_util.hpp"
#include "mmc/cache.hpp"
#include "support/test_support.hpp"

namespace mmc::test {
namespace {

template <class... A>
CacheKey key_of(const A&... values) {
  Hasher h;
  (h.add(values), ...);
  return h.digest();
}

TEST(Hasher, ConcatenationsOfStringsDiffer) {
  EXPECT_NE(key_of(std::string("ab"), std::string("c")),
            key_of(std::string("a"), std::string("bc")));
  EXPECT_NE(key_of(std::vector<std::string>{"a", "b"}, std::string("c")),
            key_of(std::vector<std::string>{"a"}, std::string("b"), std::string("c")));
}

TEST(Hasher, IntegerAndDoubleOfSameValueDiffer) {
  EXPECT_NE(key_of(std::int64_t{1}), key_of(1.0));
  EXPECT_NE(key_of(std::int64_t{1}), key_of(std::uint64_t{1}));
  EXPECT_NE(key_of(true), key_of(std::int64_t{1}));
}

TEST(Hasher, IntegerWidthsDoNotMatter) {
  EXPECT_EQ(key_of(3), key_of(std::int64_t{3}));
  EXPECT_EQ(key_of(std::int16_t{-3}), key_of(-3L));
  EXPECT_EQ(key_of(2.5f), key_of(2.5));
}

TEST(Hasher, EqualDoublesHashEqual) {
  EXPECT_EQ(key_of(-0.0), key_of(0.0));
  EXPECT_EQ(key_of(std::nan("1")), key_of(-std::numeric_limits<double>::quiet_NaN()));
  EXPECT_NE(key_of(0.1), key_of(0.1 + 1e-17 * 2));
}

TEST(Hasher, BytesAreHashedByContentNotAddress) {
  const std::vector<double> a(1000, 1.5), b(1000, 1.5);
  std::vector<double> c = a;
  c[999] = 1.25;
  Hasher ha, hb, hc;
  ha.add_bytes(a.data(), a.size() * sizeof(double));
  hb.add_bytes(b.data(), b.size() * sizeof(double));
  hc.add_bytes(c.data(), c.size() * sizeof(double));
  EXPECT_EQ(ha.digest(), hb.digest());
  EXPECT_NE(ha.digest(), hc.digest());
  // A big array enters the encoding as a fixed-size digest.
  EXPECT_LT(ha.encoding().size(), 64u);
}

TEST(Hasher, ArraysOfSameBytesButOtherShapeOrTypeDiffer) {
  const std::vector<std::uint16_t> data(12, 7);
  Hasher a, b, c;
  a.add_array(ArrayMeta::contiguous(DType(TypeId::U16), {3, 4}), data.data());
  b.add_array(ArrayMeta::contiguous(DType(TypeId::U16), {4, 3}), data.data());
  c.add_array(ArrayMeta::contiguous(DType(TypeId::I16), {3, 4}), data.data());
  EXPECT_NE(a.digest(), b.digest());
  EXPECT_NE(a.digest(), c.digest());
}

TEST(Hasher, SourceByIdentityChangesWithMtimeAndReadsNoByte) {
  TempDir dir;
  const std::string path = dir.file("cube.u8");
  write_cube(path, 1);
  Hasher before;
  before.add(open_cube(path));
  set_mtime_relative(path, 10);
  Hasher after;
  after.add(open_cube(path));
  EXPECT_NE(before.digest(), after.digest());
  Hasher again;
  again.add(open_cube(path));
  EXPECT_EQ(after.digest(), again.digest());
}

TEST(Hasher, SourceByContentDependsOnTheBytes) {
  TempDir dir;
  const std::string a = dir.file("a.u8");
  write_cube(a, 1);
  const Source source = open_cube(a);
  Hasher identity, content;
  identity.add(source, SourceHash::Identity);
  content.add(source, SourceHash::Content);
  EXPECT_NE(identity.digest(), content.digest());
  // The content part is exactly the digest of the mapped bytes.
  const std::string bytes = cube_bytes(1);
  Hasher raw;
  raw.add_bytes(bytes.data(), bytes.size());
  const std::string& enc = content.encoding();
  EXPECT_EQ(enc.substr(enc.size() - raw.encoding().size()), raw.encoding());
}

TEST(Hasher, SourceThatVanishedIsNotFound) {
  TempDir dir;
  const std::string path = dir.file("cube.u8");
  write_cube(path, 1);
  const Source source = open_cube(path);
  ASSERT_EQ(::unlink(path.c_str()), 0);
  Hasher h;
  try {
    h.add(source);
    FAIL() << "a removed source was hashed";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::NotFound);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(CacheKey, HexIsThirtyTwoLowercaseDigitsHighFirst) {
  const CacheKey k{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  EXPECT_EQ(k.hex(), "0123456789abcdeffedcba9876543210");
}

}  // namespace
}  // namespace mmc::test
