// Writes small zarr v3 arrays with zarrita, the cross-check's independent writer.
//
// Usage: node write_fixtures.mjs OUTDIR
//
// For each case NAME it writes OUTDIR/NAME.zarr (the store), OUTDIR/NAME.bin (the whole
// array's expected contents: C order, little endian, bool as one byte, the fill value where a
// chunk was never written) and OUTDIR/NAME.json ({"dtype": numpy descr of NAME.bin, "shape",
// "bin", plus notes: "writer", "codecs", "fill_value", "attributes", "dimension_names",
// "chunks_skipped", and "refusal_ok": a word, where a reader may refuse the case with an error
// naming it instead of reading it). np.fromfile(NAME.bin, dtype).reshape(shape) is what a reader of
// NAME.zarr must give.
//
// zarrita 0.7.5 encodes bytes (either endian), transpose, zstd and blosc (the last two through
// the numcodecs package). It has no encoder for gzip, zlib or crc32c and cannot write sharded
// arrays ("set on sharded arrays" is unsupported): sharding comes from make_sharded.py. The one
// gzip case here registers an encoder built on node:zlib under zarrita's codec registry (its
// name says so); zarrita still decodes it with its own gzip codec in read_store.mjs.
// numcodecs' blosc takes shuffle as a number while the v3 metadata spells it as a string, so
// the blosc cases register a small adapter that maps the name to the number before encoding.
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";

import { FileSystemStore } from "@zarrita/storage";
import * as zarr from "zarrita";

const outdir = process.argv[2];
if (!outdir) {
  process.stderr.write("usage: node write_fixtures.mjs OUTDIR\n");
  process.exit(2);
}
fs.mkdirSync(outdir, { recursive: true });

// ---------------------------------------------------------------------------------------------
// Codec registrations for the encoders zarrita lacks or spells differently.

const SHUFFLE = { noshuffle: 0, shuffle: 1, bitshuffle: 2 };
const realBlosc = zarr.registry.get("blosc");
zarr.registry.set("blosc", async () => {
  const Blosc = await realBlosc();
  return {
    fromConfig(config) {
      const shuffle =
        typeof config.shuffle === "string" ? SHUFFLE[config.shuffle] : config.shuffle;
      if (shuffle === undefined) throw new Error(`blosc shuffle ${config.shuffle}`);
      return Blosc.fromConfig({ ...config, shuffle });
    },
  };
});

class NodeGzip {
  kind = "bytes_to_bytes";
  constructor(level) {
    this.level = level;
  }
  static fromConfig(config) {
    return new NodeGzip(config?.level ?? 6);
  }
  async encode(bytes) {
    return new Uint8Array(zlib.gzipSync(bytes, { level: this.level }));
  }
  async decode(bytes) {
    return new Uint8Array(zlib.gunzipSync(bytes));
  }
}
zarr.registry.set("gzip", () => NodeGzip);

// ---------------------------------------------------------------------------------------------
// Deterministic data.

// A 32-bit linear congruential generator (Numerical Recipes' constants).
function lcg(seed) {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x;
  };
}

const DTYPES = {
  bool: { descr: "|b1", Ctr: Uint8Array },
  int8: { descr: "|i1", Ctr: Int8Array },
  uint8: { descr: "|u1", Ctr: Uint8Array },
  int16: { descr: "<i2", Ctr: Int16Array },
  uint16: { descr: "<u2", Ctr: Uint16Array },
  int32: { descr: "<i4", Ctr: Int32Array },
  uint32: { descr: "<u4", Ctr: Uint32Array },
  int64: { descr: "<i8", Ctr: BigInt64Array },
  uint64: { descr: "<u8", Ctr: BigUint64Array },
  float32: { descr: "<f4", Ctr: Float32Array },
  float64: { descr: "<f8", Ctr: Float64Array },
};

const SPECIALS = [NaN, Infinity, -Infinity, -0.0, 0.0, 5e-324, -1.5e-45];

// Values for n elements of dtype: the full range of integer types (both extremes appear at
// the start), and for floats moderate values with NaN, +-inf, -0.0 and subnormals sprinkled
// in when `specials` is set.
function makeValues(dtype, n, seed, specials) {
  const next = lcg(seed);
  const { Ctr } = DTYPES[dtype];
  const a = new Ctr(n);
  for (let i = 0; i < n; i++) {
    const r = next();
    switch (dtype) {
      case "bool":
        a[i] = (r >>> 29) % 3 === 0 ? 1 : 0;
        break;
      case "int8":
      case "uint8":
      case "int16":
      case "uint16":
      case "int32":
      case "uint32":
        // The high bits of r (an LCG's low bits are poor); storing wraps into the type's range.
        a[i] = r >>> (32 - 8 * Ctr.BYTES_PER_ELEMENT);
        break;
      case "int64":
      case "uint64": {
        const big = (BigInt(r) << 32n) | BigInt(next());
        a[i] = dtype === "int64" ? BigInt.asIntN(64, big) : big;
        break;
      }
      default: {
        // A multiple of 1/64 in [-512, 512) plus an irrational-ish fraction for f64.
        let v = ((r >>> 8) % 65536) / 64 - 512;
        if (dtype === "float64") v += (next() % 1000003) / 1000003 / 7;
        a[i] = v;
        if (specials && i % 23 === 5) a[i] = SPECIALS[(i / 23) % SPECIALS.length | 0];
      }
    }
  }
  if (n >= 2 && dtype !== "bool" && !dtype.startsWith("float")) {
    const bits = Ctr.BYTES_PER_ELEMENT * 8;
    if (dtype.startsWith("int")) {
      a[0] = bits === 64 ? -(2n ** 63n) : -(2 ** (bits - 1));
      a[1] = bits === 64 ? 2n ** 63n - 1n : 2 ** (bits - 1) - 1;
    } else {
      a[0] = bits === 64 ? 0n : 0;
      a[1] = bits === 64 ? 2n ** 64n - 1n : 2 ** bits - 1;
    }
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// n-d helpers.

const prod = (s) => s.reduce((a, b) => a * b, 1);

function cStrides(shape) {
  const st = new Array(shape.length);
  let step = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = step;
    step *= shape[i];
  }
  return st;
}

// Calls fn(multiIndex) for every index of `shape` in C order.
function forEachIndex(shape, fn) {
  const n = prod(shape);
  const idx = new Array(shape.length).fill(0);
  for (let k = 0; k < n; k++) {
    fn(idx);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

// Copies the box [lo, hi) of a C-order array `src` of `shape` into a new C-order array.
function extractBox(src, shape, lo, hi) {
  const bshape = lo.map((l, i) => hi[i] - l);
  const out = new src.constructor(prod(bshape));
  const st = cStrides(shape);
  let k = 0;
  forEachIndex(bshape, (idx) => {
    let off = 0;
    for (let d = 0; d < idx.length; d++) off += (lo[d] + idx[d]) * st[d];
    out[k++] = src[off];
  });
  return { data: out, shape: bshape };
}

function fillBox(dst, shape, lo, hi, value) {
  const bshape = lo.map((l, i) => hi[i] - l);
  const st = cStrides(shape);
  forEachIndex(bshape, (idx) => {
    let off = 0;
    for (let d = 0; d < idx.length; d++) off += (lo[d] + idx[d]) * st[d];
    dst[off] = value;
  });
}

// The value zarrita's typed array holds for a fill value from the JSON metadata.
function fillScalar(dtype, fill) {
  if (dtype === "bool") return fill ? 1 : 0;
  if (dtype === "int64" || dtype === "uint64") return BigInt(fill);
  return fill;
}

function asChunk(dtype, data, shape) {
  const d = dtype === "bool" ? new zarr.BoolArray(data.buffer, data.byteOffset, data.length) : data;
  return { data: d, shape, stride: cStrides(shape) };
}

// ---------------------------------------------------------------------------------------------
// Cases.

const LE = { name: "bytes", configuration: { endian: "little" } };
const BE = { name: "bytes", configuration: { endian: "big" } };
const zstd = (level) => ({ name: "zstd", configuration: { level, checksum: false } });
const blosc = (cname, shuffle, typesize, clevel = 5) => ({
  name: "blosc",
  configuration: { cname, clevel, shuffle, typesize, blocksize: 0 },
});
const transpose = (order) => ({ name: "transpose", configuration: { order } });

// skip(chunkCoord, linearChunkIndex) -> true for a chunk that is never written.
const everyThird = (_c, k) => k % 3 === 2;
const diagonal = (c) => c.length > 1 && c.every((x) => x === c[0]) && c[0] > 0;

const CASES = [
  // Every dtype, plain little endian, edge chunks.
  { name: "u1_2d", dtype: "uint8", shape: [37, 29], chunks: [8, 8], codecs: [LE], fill: 0 },
  { name: "i1_1d_fill", dtype: "int8", shape: [100], chunks: [16], codecs: [LE], fill: -3,
    skip: everyThird },
  { name: "i2_3d", dtype: "int16", shape: [5, 9, 11], chunks: [2, 4, 5], codecs: [LE], fill: 0 },
  { name: "u2_2d_big", dtype: "uint16", shape: [20, 30], chunks: [7, 9], codecs: [BE], fill: 0 },
  { name: "i4_3d_big", dtype: "int32", shape: [6, 10, 7], chunks: [4, 3, 7], codecs: [BE],
    fill: 0 },
  { name: "u4_2d_fill", dtype: "uint32", shape: [40, 33], chunks: [10, 10], codecs: [LE],
    fill: 4000000000, skip: everyThird },
  { name: "i8_2d_big_fill", dtype: "int64", shape: [13, 17], chunks: [5, 4], codecs: [BE],
    fill: -7, skip: everyThird },
  { name: "u8_1d", dtype: "uint64", shape: [50], chunks: [8], codecs: [LE], fill: 0 },
  { name: "f4_2d_specials", dtype: "float32", shape: [23, 19], chunks: [6, 6], codecs: [LE],
    fill: 0, specials: true },
  { name: "f8_3d_big_specials", dtype: "float64", shape: [4, 11, 9], chunks: [3, 4, 4],
    codecs: [BE], fill: 0, specials: true },
  { name: "bool_2d", dtype: "bool", shape: [21, 34], chunks: [8, 8], codecs: [LE], fill: false,
    skip: everyThird },
  { name: "bool_fill_true", dtype: "bool", shape: [9, 10], chunks: [4, 4], codecs: [LE],
    fill: true, skip: diagonal },
  // Fill values where chunks were never written.
  { name: "f4_nan_fill", dtype: "float32", shape: [30, 26], chunks: [8, 8], codecs: [LE],
    fill: NaN, skip: everyThird, specials: true },
  { name: "f8_nan_fill_dot", dtype: "float64", shape: [18, 14], chunks: [5, 5], codecs: [BE],
    fill: NaN, skip: diagonal, separator: "." },
  { name: "f8_neginf_fill", dtype: "float64", shape: [12, 12], chunks: [5, 5], codecs: [LE],
    fill: -Infinity, skip: everyThird },
  { name: "i2_all_fill", dtype: "int16", shape: [7, 9], chunks: [4, 4], codecs: [LE],
    fill: 1234, skip: () => true },
  // Chunk key encodings.
  { name: "u2_default_dot", dtype: "uint16", shape: [15, 16], chunks: [4, 6], codecs: [LE],
    fill: 0, separator: "." },
  { name: "i4_v2_dot", dtype: "int32", shape: [15, 16], chunks: [4, 6], codecs: [LE], fill: 5,
    keyEncoding: "v2", separator: ".", skip: everyThird },
  { name: "u1_3d_v2_slash", dtype: "uint8", shape: [4, 5, 6], chunks: [3, 2, 4], codecs: [LE],
    fill: 0, keyEncoding: "v2", separator: "/" },
  // Compressors.
  { name: "u2_zstd", dtype: "uint16", shape: [64, 80], chunks: [32, 32], codecs: [LE, zstd(3)],
    fill: 0 },
  { name: "f8_1d_zstd_big", dtype: "float64", shape: [3000], chunks: [700],
    codecs: [BE, zstd(5)], fill: NaN, specials: true, skip: everyThird },
  { name: "i4_blosc_lz4_shuffle", dtype: "int32", shape: [50, 60], chunks: [16, 32],
    codecs: [LE, blosc("lz4", "shuffle", 4)], fill: 0 },
  { name: "f4_blosc_zstd_bitshuffle", dtype: "float32", shape: [33, 40], chunks: [16, 16],
    codecs: [LE, blosc("zstd", "bitshuffle", 4)], fill: NaN, skip: everyThird },
  { name: "u1_blosc_zlib_noshuffle", dtype: "uint8", shape: [70, 50], chunks: [32, 32],
    codecs: [LE, blosc("zlib", "noshuffle", 1)], fill: 0 },
  { name: "i2_gzip_nodezlib", dtype: "int16", shape: [40, 30], chunks: [16, 16],
    codecs: [LE, { name: "gzip", configuration: { level: 5 } }], fill: -1, skip: everyThird },
  // transpose (stored F order, and a permutation that is not a reversal).
  { name: "u2_transpose_2d", dtype: "uint16", shape: [13, 11], chunks: [5, 4],
    codecs: [transpose([1, 0]), LE], fill: 0 },
  { name: "f4_transpose_3d_zstd", dtype: "float32", shape: [5, 7, 9], chunks: [2, 3, 4],
    codecs: [transpose([2, 1, 0]), LE, zstd(1)], fill: NaN, specials: true, skip: everyThird },
  { name: "i4_transpose_120_big", dtype: "int32", shape: [6, 5, 7], chunks: [4, 3, 5],
    codecs: [transpose([1, 2, 0]), BE], fill: 0 },
  // Chunks larger than the array; 0-d arrays.
  { name: "i4_one_big_chunk", dtype: "int32", shape: [5, 3], chunks: [8, 8], codecs: [LE],
    fill: 0 },
  { name: "f8_0d", dtype: "float64", shape: [], chunks: [], codecs: [LE], fill: 0 },
  { name: "i2_0d_unwritten", dtype: "int16", shape: [], chunks: [], codecs: [LE], fill: -42,
    skip: () => true },
  // dimension_names and attributes.
  { name: "u2_3d_named", dtype: "uint16", shape: [3, 8, 10], chunks: [1, 8, 5], codecs: [LE],
    fill: 0, dimensionNames: ["time", "y", "x"],
    attributes: { units: "counts", scale: 0.5, nested: { list: [1, 2, 3], flag: true } } },
];

async function writeCase(c) {
  const storePath = path.join(outdir, `${c.name}.zarr`);
  fs.rmSync(storePath, { recursive: true, force: true });
  const store = new FileSystemStore(storePath);
  const arr0 = await zarr.create(store, {
    shape: c.shape,
    chunkShape: c.chunks,
    dtype: c.dtype,
    codecs: c.codecs,
    fillValue: c.fill,
    chunkSeparator: c.keyEncoding ? undefined : c.separator,
    dimensionNames: c.dimensionNames,
    attributes: c.attributes,
  });
  let arr = arr0;
  if (c.keyEncoding === "v2") {
    // zarrita's create writes the "default" encoding only: rewrite zarr.json and reopen.
    const metaPath = path.join(storePath, "zarr.json");
    const meta = JSON.parse(fs.readFileSync(metaPath, "utf8"));
    meta.chunk_key_encoding = { name: "v2", configuration: { separator: c.separator } };
    fs.writeFileSync(metaPath, JSON.stringify(meta, null, 2));
    arr = await zarr.open(new FileSystemStore(storePath), { kind: "array" });
  }

  const n = prod(c.shape);
  const seed = [...c.name].reduce((h, ch) => (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0, 7);
  const values = makeValues(c.dtype, n, seed, c.specials);
  const expected = values.slice();
  const fill = fillScalar(c.dtype, c.fill);
  let skipped = 0;

  if (c.shape.length === 0) {
    if (c.skip?.([], 0)) {
      expected[0] = fill;
      skipped = 1;
    } else {
      const v = c.dtype === "bool" ? values[0] === 1 : values[0];
      await zarr.set(arr, null, v);
    }
  } else {
    const grid = c.shape.map((s, i) => Math.ceil(s / c.chunks[i]));
    let k = 0;
    const coords = [];
    forEachIndex(grid, (cc) => coords.push(cc.slice()));
    for (const cc of coords) {
      const lo = cc.map((x, i) => x * c.chunks[i]);
      const hi = lo.map((l, i) => Math.min(l + c.chunks[i], c.shape[i]));
      if (c.skip?.(cc, k++)) {
        fillBox(expected, c.shape, lo, hi, fill);
        skipped++;
        continue;
      }
      const box = extractBox(values, c.shape, lo, hi);
      const sel = lo.map((l, i) => zarr.slice(l, hi[i]));
      await zarr.set(arr, sel, asChunk(c.dtype, box.data, box.shape));
    }
  }

  // Expected bytes: little endian (this machine's order; checked below).
  fs.writeFileSync(
    path.join(outdir, `${c.name}.bin`),
    new Uint8Array(expected.buffer, expected.byteOffset, expected.byteLength),
  );
  const fillJson = typeof c.fill === "number" && !Number.isFinite(c.fill) ? String(c.fill) : c.fill;
  const info = {
    dtype: DTYPES[c.dtype].descr,
    shape: c.shape,
    bin: `${c.name}.bin`,
    writer: c.name.includes("nodezlib") ? "zarrita (gzip encoded by node:zlib)" : "zarrita",
    chunks: c.chunks,
    codecs: c.codecs.map((x) => x.name),
    fill_value: fillJson,
    chunks_skipped: skipped,
    attributes: c.attributes ?? {},
    dimension_names: c.dimensionNames ?? null,
  };
  // A reader may refuse this case, with an error naming this word, rather than read it.
  if (c.refusalOk) info.refusal_ok = c.refusalOk;
  fs.writeFileSync(path.join(outdir, `${c.name}.json`), `${JSON.stringify(info)}\n`);
}

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("write_fixtures.mjs assumes a little-endian machine");
}
const started = Date.now();
for (const c of CASES) {
  try {
    await writeCase(c);
  } catch (err) {
    process.stderr.write(`write_fixtures: case ${c.name}: ${err?.stack ?? err}\n`);
    if (err?.cause) process.stderr.write(`  cause: ${err.cause?.stack ?? err.cause}\n`);
    process.exit(1);
  }
}
process.stdout.write(
  `write_fixtures: ${CASES.length} zarrita cases in ${outdir} (${Date.now() - started} ms)\n`,
);
