// Tests of the chunk codecs: round trips of random and compressible data, and corrupt input
// (truncated, garbage, mutated) that must end in Error(Corrupt), never in a crash.
#include "io/codecs.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "mmc/error.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

using test::expect_error;

using Bytes = std::vector<std::byte>;

// Random bytes; `runs` makes them compressible (runs of 32 to 127 equal bytes).
Bytes make_data(std::size_t n, std::uint64_t seed, bool runs) {
  std::mt19937_64 rng(seed);
  Bytes out(n);
  for (std::size_t i = 0; i < n;) {
    const auto b = static_cast<std::byte>(rng());
    const std::size_t len = runs ? 32 + rng() % 96 : 1;
    for (std::size_t k = 0; k < len && i < n; ++k) out[i++] = b;
  }
  return out;
}

// One codec under test: encode with fixed settings, decode into exactly out_n bytes.
struct Codec {
  std::string name;
  std::function<Bytes(const Bytes&)> encode;
  std::function<void(const Bytes&, std::byte*, std::size_t)> decode;
};

std::vector<Codec> all_codecs() {
  std::vector<Codec> codecs;
  for (const bool gzip : {false, true}) {
    codecs.push_back(
        {gzip ? "gzip" : "zlib",
         [gzip](const Bytes& in) { return detail::zlib_encode(in.data(), in.size(), 6, gzip); },
         [gzip](const Bytes& in, std::byte* out, std::size_t n) {
           detail::zlib_decode(in.data(), in.size(), out, n, gzip, "chunk 7");
         }});
  }
  codecs.push_back({"zstd",
                    [](const Bytes& in) { return detail::zstd_encode(in.data(), in.size(), 3); },
                    [](const Bytes& in, std::byte* out, std::size_t n) {
                      detail::zstd_decode(in.data(), in.size(), out, n, "chunk 7");
                    }});
  for (const char* cname : {"lz4", "zstd", "blosclz", "zlib", "lz4hc"}) {
    for (const int shuffle : {0, 1, 2}) {
      codecs.push_back({std::string("blosc-") + cname + "-" + std::to_string(shuffle),
                        [cname, shuffle](const Bytes& in) {
                          return detail::blosc_encode(in.data(), in.size(), 4, cname, 5, shuffle);
                        },
                        [](const Bytes& in, std::byte* out, std::size_t n) {
                          detail::blosc_decode(in.data(), in.size(), out, n, "chunk 7");
                        }});
    }
  }
  return codecs;
}

constexpr std::size_t kSizes[] = {0, 1, 2, 3, 7, 64, 1000, 4096, 65537, 300001};

TEST(Codecs, RoundTripRandomAndCompressibleDataOfManySizes) {
  for (const Codec& codec : all_codecs()) {
    for (const std::size_t n : kSizes) {
      for (const bool runs : {false, true}) {
        SCOPED_TRACE(codec.name + " n=" + std::to_string(n) + (runs ? " runs" : " random"));
        const Bytes data = make_data(n, n * 31 + 7, runs);
        const Bytes encoded = codec.encode(data);
        Bytes out(n + 1, std::byte{0x5a});  // one guard byte past the end
        codec.decode(encoded, out.data(), n);
        EXPECT_EQ(out.back(), std::byte{0x5a}) << "wrote past out_n";
        out.pop_back();
        EXPECT_EQ(out, data);
        // Bit shuffle turns runs of random bytes into short runs of bit planes, which lz4
        // cannot shrink; the other modes must.
        if (runs && n >= 4096 && codec.name.back() != '2') {
          EXPECT_LT(encoded.size(), n / 2) << "did not compress";
        }
      }
    }
  }
}

TEST(Codecs, ZlibAndGzipWriteTheirOwnFormats) {
  const Bytes data = make_data(100, 1, true);
  const Bytes z = detail::zlib_encode(data.data(), data.size(), 1, false);
  const Bytes g = detail::zlib_encode(data.data(), data.size(), 1, true);
  ASSERT_GE(z.size(), 2u);
  ASSERT_GE(g.size(), 2u);
  EXPECT_EQ(z[0], std::byte{0x78});  // zlib header: deflate, 32 KiB window
  EXPECT_EQ(g[0], std::byte{0x1f});  // gzip magic
  EXPECT_EQ(g[1], std::byte{0x8b});
  Bytes out(100);
  // Each format is rejected by the other's decoder.
  expect_error([&] { detail::zlib_decode(g.data(), g.size(), out.data(), 100, false, "g"); },
               ErrorCode::Corrupt, {"g: "});
  expect_error([&] { detail::zlib_decode(z.data(), z.size(), out.data(), 100, true, "z"); },
               ErrorCode::Corrupt, {"z: "});
}

TEST(Codecs, GzipAcceptsSeveralMembersAndZeroPaddingButNotGarbage) {
  const Bytes a = make_data(300, 2, false);
  const Bytes b = make_data(200, 3, true);
  Bytes joined = detail::zlib_encode(a.data(), a.size(), 5, true);
  const Bytes second = detail::zlib_encode(b.data(), b.size(), 5, true);
  joined.insert(joined.end(), second.begin(), second.end());
  joined.insert(joined.end(), 8, std::byte{0});
  Bytes out(500);
  detail::zlib_decode(joined.data(), joined.size(), out.data(), out.size(), true, "two");
  EXPECT_TRUE(std::equal(a.begin(), a.end(), out.begin()));
  EXPECT_TRUE(std::equal(b.begin(), b.end(), out.begin() + 300));
  joined.push_back(std::byte{'x'});
  expect_error(
      [&] { detail::zlib_decode(joined.data(), joined.size(), out.data(), 500, true, "junk"); },
      ErrorCode::Corrupt, {"junk: ", "garbage"});
}

TEST(Codecs, ZlibIgnoresBytesAfterTheStreamLikePython) {
  const Bytes data = make_data(1000, 4, true);
  Bytes z = detail::zlib_encode(data.data(), data.size(), 9, false);
  z.insert(z.end(), {std::byte{1}, std::byte{2}, std::byte{3}});
  Bytes out(1000);
  detail::zlib_decode(z.data(), z.size(), out.data(), out.size(), false, "tail");
  EXPECT_EQ(out, data);
}

TEST(Codecs, RejectsOutputOfTheWrongSize) {
  for (const Codec& codec : all_codecs()) {
    SCOPED_TRACE(codec.name);
    const Bytes data = make_data(5000, 5, true);
    const Bytes encoded = codec.encode(data);
    Bytes out(5001);
    expect_error([&] { codec.decode(encoded, out.data(), 4999); }, ErrorCode::Corrupt,
                 {"chunk 7: ", "4999"});
    expect_error([&] { codec.decode(encoded, out.data(), 5001); }, ErrorCode::Corrupt,
                 {"chunk 7: "});
  }
}

TEST(Codecs, RejectsEveryTruncationAsCorrupt) {
  for (const Codec& codec : all_codecs()) {
    SCOPED_TRACE(codec.name);
    const Bytes data = make_data(3000, 6, false);
    const Bytes encoded = codec.encode(data);
    Bytes out(data.size());
    for (std::size_t len = 0; len < encoded.size(); ++len) {
      // A heap copy of exactly len bytes, so ASan sees any read past the end.
      const Bytes cut(encoded.begin(), encoded.begin() + static_cast<std::ptrdiff_t>(len));
      try {
        codec.decode(cut, out.data(), out.size());
        ADD_FAILURE() << "a truncation to " << len << " of " << encoded.size() << " bytes decoded";
      } catch (const Error& e) {
        ASSERT_EQ(e.code(), ErrorCode::Corrupt) << e.what();
      }
    }
  }
}

TEST(Codecs, RejectsGarbageAsCorrupt) {
  for (const Codec& codec : all_codecs()) {
    SCOPED_TRACE(codec.name);
    for (const std::size_t n : {1u, 15u, 16u, 17u, 100u, 5000u}) {
      const Bytes garbage = make_data(n, n, false);
      Bytes out(4096);
      expect_error([&] { codec.decode(garbage, out.data(), out.size()); }, ErrorCode::Corrupt,
                   {"chunk 7: "});
    }
  }
}

// Random byte mutations of valid buffers: decoding may succeed (blosc has no checksum) but
// must either produce exactly the bytes asked for or throw Error(Corrupt); nothing else.
TEST(Codecs, SurvivesMutatedInput) {
  std::mt19937_64 rng(99);
  for (const Codec& codec : all_codecs()) {
    SCOPED_TRACE(codec.name);
    const Bytes data = make_data(20000, 8, true);
    const Bytes encoded = codec.encode(data);
    int rejected = 0;
    for (int trial = 0; trial < 200; ++trial) {
      Bytes bad = encoded;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        bad[rng() % bad.size()] ^= static_cast<std::byte>(1 + rng() % 255);
      }
      Bytes out(data.size());
      try {
        codec.decode(bad, out.data(), out.size());
      } catch (const Error& e) {
        ASSERT_EQ(e.code(), ErrorCode::Corrupt) << e.what();
        ++rejected;
      }
    }
    if (codec.name == "zlib" || codec.name == "gzip") {
      EXPECT_GT(rejected, 150) << "checksummed formats should catch most mutations";
    }
  }
}

TEST(Codecs, BloscRejectsAHeaderThatLiesAboutSizes) {
  const Bytes data = make_data(1000, 9, true);
  Bytes encoded = detail::blosc_encode(data.data(), data.size(), 8, "lz4", 5, 1);
  ASSERT_GE(encoded.size(), 16u);
  Bytes out(1000);
  // Bytes 4..7: uncompressed size; 12..15: compressed size (little-endian).
  Bytes bigger = encoded;
  bigger[5] = std::byte{0x7f};
  expect_error([&] { detail::blosc_decode(bigger.data(), bigger.size(), out.data(), 1000, "b"); },
               ErrorCode::Corrupt, {"b: "});
  Bytes longer = encoded;
  longer[13] = std::byte{0x7f};
  expect_error([&] { detail::blosc_decode(longer.data(), longer.size(), out.data(), 1000, "c"); },
               ErrorCode::Corrupt, {"c: ", "header"});
}

TEST(Codecs, RejectsBadSettings) {
  const Bytes data(10);
  expect_error([&] { detail::zlib_encode(data.data(), data.size(), 10, false); },
               ErrorCode::InvalidArgument, {"zlib level 10"});
  expect_error([&] { detail::zstd_encode(data.data(), data.size(), 99); },
               ErrorCode::InvalidArgument, {"zstd level 99"});
  expect_error([&] { detail::blosc_encode(data.data(), data.size(), 1, "lz4", 10, 1); },
               ErrorCode::InvalidArgument, {"clevel 10"});
  expect_error([&] { detail::blosc_encode(data.data(), data.size(), 1, "lz4", 5, 3); },
               ErrorCode::InvalidArgument, {"shuffle 3"});
  expect_error([&] { detail::blosc_encode(data.data(), data.size(), 1, "brotli", 5, 1); },
               ErrorCode::InvalidArgument, {"brotli"});
}

TEST(Codecs, ByteShuffleGroupsByteKOfEveryElement) {
  // Three 4-byte elements: bytes a0 a1 a2 a3 b0 ... -> a0 b0 c0 a1 b1 c1 ...
  Bytes in(12);
  for (int i = 0; i < 12; ++i) in[i] = static_cast<std::byte>(i);
  Bytes shuffled(12);
  detail::byte_shuffle(in.data(), shuffled.data(), 3, 4);
  const Bytes expected = {std::byte{0},  std::byte{4}, std::byte{8}, std::byte{1},
                          std::byte{5},  std::byte{9}, std::byte{2}, std::byte{6},
                          std::byte{10}, std::byte{3}, std::byte{7}, std::byte{11}};
  EXPECT_EQ(shuffled, expected);
  Bytes back(12);
  detail::byte_unshuffle(shuffled.data(), back.data(), 3, 4);
  EXPECT_EQ(back, in);
  for (const std::size_t itemsize : {1u, 2u, 8u}) {
    const Bytes data = make_data(itemsize * 1001, itemsize, false);
    Bytes s(data.size()), u(data.size());
    detail::byte_shuffle(data.data(), s.data(), 1001, itemsize);
    detail::byte_unshuffle(s.data(), u.data(), 1001, itemsize);
    EXPECT_EQ(u, data) << itemsize;
  }
}

}  // namespace
}  // namespace mmc
