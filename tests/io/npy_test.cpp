// Tests of the .npy reader and writer: files numpy wrote, headers numpy must read back, and
// hostile headers.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "mmc/error.hpp"
#include "mmc/source.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

using test::TempDir;

using test::expect_error;

// One line of io_write_npy.py's manifest.
struct NumpyCase {
  std::string name;
  std::string descr;
  bool fortran = false;
  Shape shape;
  int major = 1;
  std::uint64_t data_offset = 0;
};

// Has numpy write the cases of `group` (see io_write_npy.py) into dir.
std::map<std::string, NumpyCase> write_numpy_cases(const TempDir& dir, const std::string& group) {
  std::istringstream in(test::run_python("io_write_npy.py", {dir.path(), group}));
  std::map<std::string, NumpyCase> cases;
  NumpyCase c;
  std::string shape;
  int fortran = 0;
  while (in >> c.name >> c.descr >> fortran >> shape >> c.major >> c.data_offset) {
    c.fortran = fortran != 0;
    c.shape = shape == "-" ? Shape{} : parse_shape(shape);
    cases[c.name] = c;
  }
  EXPECT_FALSE(cases.empty()) << "the fixture wrote no " << group << " case";
  return cases;
}

// Opens the case's .npy and checks header, geometry and every mapped byte against numpy's.
void expect_case_matches(const TempDir& dir, const NumpyCase& c) {
  SCOPED_TRACE(c.name);
  const std::string path = dir.file(c.name + ".npy");
  const NpyHeader h = read_npy_header(path);
  EXPECT_EQ(h.major, c.major);
  EXPECT_EQ(h.minor, 0);
  EXPECT_EQ(h.dtype, DType::from_numpy_descr(c.descr));
  EXPECT_EQ(h.fortran_order, c.fortran);
  EXPECT_EQ(h.shape, c.shape);
  EXPECT_EQ(h.data_offset, c.data_offset);

  const Source s = open_npy(path);
  EXPECT_EQ(s.kind(), "npy");
  EXPECT_EQ(s.data_offset(), c.data_offset);
  EXPECT_EQ(s.meta().dtype.numpy_descr(), c.descr);
  EXPECT_EQ(s.meta().shape, c.shape);
  EXPECT_EQ(s.meta().order, c.fortran ? Order::F : Order::C);
  EXPECT_EQ(s.meta().strides,
            ArrayMeta::contiguous(s.meta().dtype, c.shape, s.meta().order).strides);
  const std::string expected = test::read_file(dir.file(c.name + ".bin"));
  ASSERT_EQ(s.mapping().size(), expected.size());
  EXPECT_EQ(s.mapping().size(), s.meta().nbytes());
  if (!expected.empty()) {
    EXPECT_EQ(std::memcmp(s.data(), expected.data(), expected.size()), 0) << "bytes differ";
  }
}

TEST(Npy, ReadsEveryDtypeInBothByteOrdersAsNumpyWroteThem) {
  TempDir dir;
  const auto cases = write_numpy_cases(dir, "dtypes");
  int seen = 0;
  for (const auto& [name, c] : cases) {
    if (name.rfind("dtype_", 0) != 0) continue;
    expect_case_matches(dir, c);
    ++seen;
  }
  EXPECT_EQ(seen, 24);  // 12 types x 2 byte orders
  EXPECT_EQ(read_npy_header(dir.file("dtype_f2_be.npy")).dtype, DType(TypeId::F16, ByteOrder::Big));
  EXPECT_EQ(cases.at("dtype_i4_be").descr, ">i4");
  EXPECT_EQ(read_npy_header(dir.file("dtype_f8_be.npy")).dtype.byte_order(), ByteOrder::Big);
  EXPECT_EQ(read_npy_header(dir.file("dtype_b1_le.npy")).dtype.id(), TypeId::Bool);
}

TEST(Npy, ReadsFortranOrderArrays) {
  TempDir dir;
  const auto cases = write_numpy_cases(dir, "fortran");
  for (const char* name : {"fortran_f4", "fortran_be_i2"}) {
    ASSERT_TRUE(cases.at(name).fortran) << name;
    expect_case_matches(dir, cases.at(name));
  }
  const Source s = open_npy(dir.file("fortran_f4.npy"));
  EXPECT_EQ(s.meta().strides, (std::vector<std::int64_t>{4, 16, 48}));
}

TEST(Npy, ReadsZeroToFiveDimensionsAndEmptyArrays) {
  TempDir dir;
  const auto cases = write_numpy_cases(dir, "ranks");
  for (const char* name : {"rank0", "rank1", "rank2", "rank3", "rank4", "rank5", "empty"}) {
    expect_case_matches(dir, cases.at(name));
  }
  EXPECT_TRUE(cases.at("rank0").shape.empty());
  EXPECT_EQ(cases.at("rank5").shape.size(), 5u);
  const Source zero_d = open_npy(dir.file("rank0.npy"));
  std::int32_t v = 0;
  std::memcpy(&v, zero_d.data(), 4);
  EXPECT_EQ(v, -42);
}

TEST(Npy, ReadsVersions1And2And3) {
  TempDir dir;
  const auto cases = write_numpy_cases(dir, "versions");
  for (const int major : {1, 2, 3}) {
    const NumpyCase& c = cases.at("version" + std::to_string(major));
    EXPECT_EQ(c.major, major);
    expect_case_matches(dir, c);
  }
}

TEST(Npy, ReadsDataOffsetsThatAreNotAlignedTo64) {
  TempDir dir;
  const auto cases = write_numpy_cases(dir, "offsets");
  EXPECT_EQ(cases.at("aligned16").data_offset % 16, 0u);
  EXPECT_NE(cases.at("aligned16").data_offset % 64, 0u);
  EXPECT_EQ(cases.at("odd_offset").data_offset % 2, 1u);
  expect_case_matches(dir, cases.at("aligned16"));
  expect_case_matches(dir, cases.at("odd_offset"));
}

TEST(Npy, AllowsBytesAfterTheData) {
  TempDir dir;
  const NumpyCase c = write_numpy_cases(dir, "offsets").at("trailing_bytes");
  EXPECT_GT(test::read_file(dir.file("trailing_bytes.npy")).size(),
            c.data_offset + test::read_file(dir.file("trailing_bytes.bin")).size());
  expect_case_matches(dir, c);
}

// A small .npy file written with make_npy_header: 7 u2 elements.
std::string write_small_npy(const TempDir& dir) {
  const std::string path = dir.file("small.npy");
  test::write_file(path, make_npy_header(DType(TypeId::U16, ByteOrder::Little), {7}, false) +
                             std::string(14, '\x11'));
  return path;
}

TEST(Npy, OpensInCopyOnWriteAndReadWriteModes) {
  TempDir dir;
  const std::string path = write_small_npy(dir);
  const std::string before = test::read_file(path);
  const std::uint64_t offset = read_npy_header(path).data_offset;
  {
    const Source c = open_npy(path, MapMode::CopyOnWrite);
    c.mapping().mutable_data()[0] = std::byte{0x5a};
    EXPECT_EQ(c.data()[0], std::byte{0x5a});
  }
  EXPECT_EQ(test::read_file(path), before);
  {
    const Source w = open_npy(path, MapMode::ReadWrite);
    w.mapping().mutable_data()[0] = std::byte{0x5a};
    w.mapping().sync();
  }
  const std::string after = test::read_file(path);
  ASSERT_EQ(after.size(), before.size());
  EXPECT_EQ(after[offset], '\x5a');
  EXPECT_EQ(after.substr(0, offset), before.substr(0, offset));
}

TEST(Npy, RefusesCreateMode) {
  TempDir dir;
  const std::string path = write_small_npy(dir);
  const std::string before = test::read_file(path);
  expect_error([&] { open_npy(path, MapMode::Create); }, ErrorCode::InvalidArgument, {path});
  EXPECT_EQ(test::read_file(path), before);
}

// --- The header writer -------------------------------------------------------------------

TEST(NpyHeader, WritesNumpysDictPaddedTo64) {
  const std::string h = make_npy_header(DType(TypeId::U8), {3, 4}, false);
  ASSERT_GE(h.size(), 10u);
  EXPECT_EQ(h.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ(h.size() % 64, 0u);
  const std::size_t header_len = static_cast<unsigned char>(h[8]) | static_cast<unsigned char>(h[9])
                                                                        << 8;
  EXPECT_EQ(10 + header_len, h.size());
  EXPECT_EQ(h.substr(10, 59), "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4), }");
  EXPECT_EQ(h.back(), '\n');
  EXPECT_EQ(h.find_first_not_of(' ', 10 + 59), h.size() - 1);
}

TEST(NpyHeader, WritesOneAndZeroDimensionalShapesAsPythonTuples) {
  EXPECT_NE(make_npy_header(DType(TypeId::F64, ByteOrder::Big), {7}, true)
                .find("{'descr': '>f8', 'fortran_order': True, 'shape': (7,), }"),
            std::string::npos);
  EXPECT_NE(make_npy_header(DType(TypeId::I16, ByteOrder::Little), {}, false)
                .find("{'descr': '<i2', 'fortran_order': False, 'shape': (), }"),
            std::string::npos);
}

TEST(NpyHeader, SwitchesToVersion2WhenTheHeaderExceeds65535Bytes) {
  const Shape many(30000, 1);
  const std::string h = make_npy_header(DType(TypeId::U8), many, false);
  EXPECT_EQ(h.substr(0, 8), std::string("\x93NUMPY\x02\x00", 8));
  const std::uint64_t header_len =
      static_cast<unsigned char>(h[8]) | static_cast<unsigned char>(h[9]) << 8 |
      static_cast<unsigned char>(h[10]) << 16 |
      static_cast<std::uint64_t>(static_cast<unsigned char>(h[11])) << 24;
  EXPECT_GT(header_len, 65535u);
  EXPECT_EQ(12 + header_len, h.size());
  EXPECT_EQ(h.size() % 64, 0u);
  EXPECT_EQ(h.back(), '\n');
}

TEST(NpyHeader, RoundTripsThroughNumpyLoad) {
  TempDir dir;
  struct Case {
    DType dtype;
    Shape shape;
    bool fortran;
  };
  const std::vector<Case> cases{
      {DType(TypeId::U8), {3, 4}, false},
      {DType(TypeId::U16, ByteOrder::Big), {2, 3, 2}, true},
      {DType(TypeId::F32, ByteOrder::Little), {5}, false},
      {DType(TypeId::I64, ByteOrder::Little), {}, false},
      {DType(TypeId::Bool), {2, 2}, false},
      {DType(TypeId::F64, ByteOrder::Big), {0, 2}, false},
      {DType(TypeId::I32, ByteOrder::Little), {2, 1, 2, 1, 2}, true},
  };
  std::vector<std::string> paths;
  std::vector<std::string> expected;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const ArrayMeta meta = ArrayMeta::contiguous(c.dtype, c.shape);
    std::string data(meta.nbytes(), '\0');
    std::string hex;
    for (std::size_t b = 0; b < data.size(); ++b) {
      // Bool must hold 0 or 1; other types any byte.
      data[b] = static_cast<char>(c.dtype.id() == TypeId::Bool ? (b % 3 == 0) : b * 37 + i);
      char two[3];
      std::snprintf(two, sizeof two, "%02x", static_cast<unsigned char>(data[b]));
      hex += two;
    }
    paths.push_back(dir.file("rt" + std::to_string(i) + ".npy"));
    test::write_file(paths.back(), make_npy_header(c.dtype, c.shape, c.fortran) + data);
    const bool numpy_fortran = c.fortran && c.shape.size() > 1;
    expected.push_back(c.dtype.numpy_descr() + " " + (numpy_fortran ? "1" : "0") + " " +
                       (c.shape.empty() ? "-" : format_shape(c.shape)) + " " +
                       (hex.empty() ? "-" : hex));

    // And our reader sees what we wrote.
    const Source s = open_npy(paths.back());
    EXPECT_EQ(s.meta().dtype, c.dtype);
    EXPECT_EQ(s.meta().shape, c.shape);
    EXPECT_EQ(s.data_offset() % 64, 0u);
  }
  std::istringstream out(test::run_python("io_check_npy.py", paths));
  for (std::size_t i = 0; i < cases.size(); ++i) {
    std::string line;
    ASSERT_TRUE(std::getline(out, line)) << "numpy printed too few lines";
    EXPECT_EQ(line, expected[i]) << paths[i];
  }
}

// --- Header variants numpy (ast.literal_eval) accepts --------------------------------------

// A .npy file of version major.0 with `dict` as its header text and `data` after it.
std::string npy_bytes(const std::string& dict, const std::string& data = "", int major = 1) {
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(major);
  out += '\0';
  const std::size_t n = dict.size();
  for (int i = 0; i < (major == 1 ? 2 : 4); ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
  return out + dict + data;
}

TEST(NpyHeader, AcceptsQuotingKeyOrderAndWhitespaceVariants) {
  TempDir dir;
  const std::string data(24, '\x07');
  const std::vector<std::string> dicts{
      "{'descr': '<u2', 'fortran_order': False, 'shape': (3, 4), }\n",
      "{\"descr\": \"<u2\", \"fortran_order\": False, \"shape\": (3, 4)}",
      "{'shape': (3, 4), 'fortran_order': False, 'descr': '<u2'}",
      "  {'descr':'<u2','fortran_order':False,'shape':(3,4,),}   \n",
      "{\n 'descr' : '<u2' ,\n 'fortran_order' : False ,\n 'shape' : ( 3 , 4 ) ,\n}\n",
      "{'descr': '<u2', 'fortran_order': False, 'shape': (3, 4), }" + std::string(100, ' ') + "\n",
  };
  std::vector<std::string> paths;
  for (std::size_t i = 0; i < dicts.size(); ++i) {
    paths.push_back(dir.file("v" + std::to_string(i) + ".npy"));
    test::write_file(paths.back(), npy_bytes(dicts[i], data));
    const NpyHeader h = read_npy_header(paths.back());
    EXPECT_EQ(h.dtype, DType(TypeId::U16, ByteOrder::Little)) << dicts[i];
    EXPECT_FALSE(h.fortran_order) << dicts[i];
    EXPECT_EQ(h.shape, (Shape{3, 4})) << dicts[i];
    EXPECT_EQ(h.data_offset, 10 + dicts[i].size()) << dicts[i];
  }
  // numpy agrees that each variant is the same array.
  std::istringstream out(test::run_python("io_check_npy.py", paths));
  std::string hex;
  for (int i = 0; i < 24; ++i) hex += "07";
  std::string line;
  int lines = 0;
  for (; std::getline(out, line); ++lines) EXPECT_EQ(line, "<u2 0 3,4 " + hex);
  EXPECT_EQ(lines, static_cast<int>(dicts.size()));
}

TEST(NpyHeader, AcceptsPython2LongSuffixInVersion1) {
  TempDir dir;
  const std::string path = dir.file("py2.npy");
  test::write_file(path, npy_bytes("{'descr': '<i2', 'fortran_order': True, 'shape': (2L, 3L), }\n",
                                   std::string(12, '\0')));
  const NpyHeader h = read_npy_header(path);
  EXPECT_EQ(h.shape, (Shape{2, 3}));
  EXPECT_TRUE(h.fortran_order);
}

// --- Hostile headers --------------------------------------------------------------------

// Writes `bytes` to a fresh file and expects read_npy_header and open_npy to fail with `code`,
// naming the path and each of `parts`.
void expect_rejected(const std::string& bytes, ErrorCode code,
                     std::initializer_list<std::string> parts = {}) {
  TempDir dir;
  const std::string path = dir.file("hostile.npy");
  test::write_file(path, bytes);
  std::vector<std::string> all{path};
  all.insert(all.end(), parts.begin(), parts.end());
  for (int reader = 0; reader < 2; ++reader) {
    try {
      if (reader == 0) {
        read_npy_header(path);
      } else {
        open_npy(path);
      }
      ADD_FAILURE() << "accepted: " << testing::PrintToString(bytes);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << to_string(e.code()) << ": " << e.what();
      for (const auto& p : all) {
        EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
            << "message lacks '" << p << "': " << e.what();
      }
    }
  }
}

const char kGood[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";

TEST(NpyHeader, AcceptsTheBaseOfTheHostileCases) {
  TempDir dir;
  const std::string path = dir.file("good.npy");
  test::write_file(path, npy_bytes(kGood, std::string(24, '\0')));
  EXPECT_EQ(open_npy(path).meta().shape, (Shape{2, 3}));
}

TEST(NpyHeader, RejectsBadMagic) {
  std::string bytes = npy_bytes(kGood, std::string(24, '\0'));
  bytes[1] = 'X';
  expect_rejected(bytes, ErrorCode::Corrupt, {"magic"});
  expect_rejected("PK\x03\x04 a zip file, not npy", ErrorCode::Corrupt, {"magic"});
}

TEST(NpyHeader, RejectsTruncatedFiles) {
  const std::string bytes = npy_bytes(kGood, std::string(24, '\0'));
  for (const std::size_t keep : {0ul, 3ul, 7ul, 9ul}) {
    expect_rejected(bytes.substr(0, keep), ErrorCode::Corrupt);
  }
  expect_rejected(std::string("\x93NUMPY\x02\x00\x10\x00", 10), ErrorCode::Corrupt);
}

TEST(NpyHeader, RejectsHeaderLengthPastTheEndOfTheFile) {
  std::string bytes = npy_bytes(kGood);
  bytes[8] = '\xff';
  bytes[9] = '\xff';
  expect_rejected(bytes, ErrorCode::Corrupt, {"65535"});
  std::string v2 = npy_bytes(kGood, "", 2);
  v2[11] = '\x7f';
  expect_rejected(v2, ErrorCode::Corrupt, {"past the end"});
}

TEST(NpyHeader, RejectsUnknownVersions) {
  for (const char* version : {"\x04\x00", "\x00\x00", "\x01\x01", "\x02\x05"}) {
    std::string bytes = npy_bytes(kGood, std::string(24, '\0'));
    bytes[6] = version[0];
    bytes[7] = version[1];
    expect_rejected(bytes, ErrorCode::Corrupt, {"version"});
  }
}

TEST(NpyHeader, RejectsShapesWhoseSizeOverflows) {
  expect_rejected(
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }"),
      ErrorCode::Corrupt, {"overflow"});
  expect_rejected(
      npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (9223372036854775808,), }"),
      ErrorCode::Corrupt, {"9223372036854775808"});
  expect_rejected(npy_bytes("{'descr': '<u8', 'fortran_order': False, 'shape': "
                            "(4294967296, 4294967296, 0), }"),
                  ErrorCode::Corrupt, {"overflow"});
}

TEST(NpyHeader, RejectsHugeExtentsNextToAZero) {
  // Empty arrays whose other extents overflow: numpy refuses to make them, and so do we.
  expect_rejected(npy_bytes("{'descr': '<u2', 'fortran_order': True, 'shape': "
                            "(0, 4611686018427387904, 4611686018427387904), }"),
                  ErrorCode::Corrupt, {"overflow"});
  expect_rejected(npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': "
                            "(4611686018427387904, 0, 4611686018427387904), }"),
                  ErrorCode::Corrupt, {"overflow"});
}

TEST(NpyHeader, OpenRejectsShapesLargerThanTheFile) {
  TempDir dir;
  const std::string path = dir.file("big.npy");
  test::write_file(path,
                   npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 1000), }",
                             std::string(1000, '\0')));
  EXPECT_EQ(read_npy_header(path).shape, (Shape{1000, 1000}));  // the header itself is fine
  expect_error([&] { open_npy(path); }, ErrorCode::Corrupt, {path, "4000000", "1000"});
}

TEST(NpyHeader, RejectsNegativeDimensions) {
  expect_rejected(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }"),
                  ErrorCode::Corrupt, {"negative"});
}

TEST(NpyHeader, RejectsUnknownMissingAndDuplicateKeys) {
  expect_rejected(
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1, }"),
      ErrorCode::Corrupt, {"unknown key 'extra'"});
  expect_rejected(npy_bytes("{'descr': '<f4', 'shape': (2,), }"), ErrorCode::Corrupt,
                  {"missing key 'fortran_order'"});
  expect_rejected(npy_bytes("{'descr': '<f4', 'fortran_order': False, }"), ErrorCode::Corrupt,
                  {"missing key 'shape'"});
  expect_rejected(npy_bytes("{}"), ErrorCode::Corrupt, {"missing key 'descr'"});
  expect_rejected(
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'shape': (2,)}"),
      ErrorCode::Corrupt, {"twice"});
}

// The header is read, not mapped: a header longer than any three keys need is refused before
// it costs an allocation of its length.
TEST(NpyHeader, RejectsAHeaderLongerThanSixteenMiB) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  expect_rejected(npy_bytes(dict + std::string((16 << 20) + 1 - dict.size(), ' '), "xxxxxxxx", 2),
                  ErrorCode::Corrupt, {"header of 16777217 bytes"});
}

TEST(NpyHeader, QuotesHostileTextShortlyInMessages) {
  TempDir dir;
  const std::string path = dir.file("long.npy");
  const std::string junk(100000, 'k');
  for (const std::string& dict :
       {"{'" + junk + "': 1}", "{'descr': '<" + junk + "', 'fortran_order': False, 'shape': ()}"}) {
    test::write_file(path, npy_bytes(dict, "xxxxxxxx", 2));
    try {
      read_npy_header(path);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_LT(std::string(e.what()).size(), path.size() + 200) << e.what();
      EXPECT_NE(std::string(e.what()).find("kkk..."), std::string::npos) << e.what();
    }
  }
}

TEST(NpyHeader, RejectsUnsupportedDtypesAsInvalidArgument) {
  for (const char* descr : {"|O", "<U10", "<c16", "<f16", "|V8", "<M8[ns]", "<e"}) {
    expect_rejected(npy_bytes(std::string("{'descr': '") + descr +
                              "', 'fortran_order': False, 'shape': (2,), }"),
                    ErrorCode::InvalidArgument, {descr});
  }
  expect_rejected(npy_bytes("{'descr': [('a', '<f4'), ('b', '<i2')], 'fortran_order': False, "
                            "'shape': (2,), }"),
                  ErrorCode::InvalidArgument, {"structured"});
}

TEST(NpyHeader, RejectsGarbageDictSyntax) {
  const char* bad[] = {
      "",
      "not a dict",
      "{'descr' '<f4', 'fortran_order': False, 'shape': (2,), }",
      "{'descr': '<f4' 'fortran_order': False, 'shape': (2,), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), ",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,),, }",
      "['descr', '<f4']",
      "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }",
      "{'descr': '<f4', 'fortran_order': false, 'shape': (2,), }",
      "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2,), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3], }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3.0), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (02, 3), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2 3), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (,), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } # comment",
      "{'descr': <f4, 'fortran_order': False, 'shape': (2,), }",
      "{descr: '<f4', 'fortran_order': False, 'shape': (2,), }",
      "{'descr': '<\\x66\\x34', 'fortran_order': False, 'shape': (2,), }",
  };
  for (const char* dict : bad) {
    SCOPED_TRACE(dict);
    expect_rejected(npy_bytes(dict, std::string(8, '\0')), ErrorCode::Corrupt, {"header"});
  }
}

TEST(NpyHeader, RejectsNulPadding) {
  expect_rejected(npy_bytes(std::string(kGood) + std::string(3, '\0'), std::string(24, '\0')),
                  ErrorCode::Corrupt, {"after the dict"});
}

TEST(NpyHeader, RejectsUnterminatedStrings) {
  expect_rejected(npy_bytes("{'descr': '<f4, 'fortran_order': False, 'shape': (2,), }"),
                  ErrorCode::Corrupt);
  expect_rejected(npy_bytes("{'descr': '<f4"), ErrorCode::Corrupt, {"unterminated"});
  expect_rejected(npy_bytes("{'descr\": '<f4', 'fortran_order': False, 'shape': (2,), }"),
                  ErrorCode::Corrupt);
}

TEST(NpyHeader, RejectsTooManyDimensions) {
  std::string dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (";
  for (int i = 0; i < 65; ++i) dict += "1, ";
  dict += "), }";
  expect_rejected(npy_bytes(dict, "x"), ErrorCode::Corrupt, {"dimensions"});
}

TEST(NpyHeader, RejectsPython2SuffixInVersion3) {
  expect_rejected(
      npy_bytes("{'descr': '<i2', 'fortran_order': False, 'shape': (2L,), }", "xxxx", 3),
      ErrorCode::Corrupt);
}

TEST(NpyHeader, MissingFileIsNotFoundAndDirectoryIsInvalid) {
  TempDir dir;
  const std::string path = dir.file("missing.npy");
  expect_error([&] { read_npy_header(path); }, ErrorCode::NotFound, {path});
  expect_error([&] { open_npy(path); }, ErrorCode::NotFound, {path});
  expect_error([&] { open_npy(dir.path()); }, ErrorCode::InvalidArgument, {dir.path()});
}

}  // namespace
}  // namespace mmc
