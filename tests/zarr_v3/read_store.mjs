// Reads a whole zarr v3 array with zarrita, the cross-check's independent reader.
//
// Usage: node read_store.mjs STORE OUT.bin [STORE2 OUT2.bin ...]
//
// Writes the array's contents to OUT.bin as raw C-order little-endian bytes (bool as one byte
// 0 or 1) and prints one JSON line: {"dtype": little-endian numpy descr, "shape": [...],
// "attributes": {...}, "dimension_names": [...] or null, "codecs": [names of the top-level
// codecs]}. Works for sharded arrays too, as far as zarrita reads them: zarrita 0.7.5 reads the
// shard index from the end of the shard file whatever index_location says, and does not check
// crc32c checksums.
//
// Several STORE OUT.bin pairs read them in turn in one process (one JSON line each, in order);
// a store that cannot be read prints {"store": STORE, "error": "..."} instead, its error goes
// to stderr too, and the exit status is 1 if any store failed.
import * as fs from "node:fs";

import { FileSystemStore } from "@zarrita/storage";
import * as zarr from "zarrita";

const args = process.argv.slice(2);
if (args.length === 0 || args.length % 2 !== 0) {
  process.stderr.write("usage: node read_store.mjs STORE OUT.bin [STORE2 OUT2.bin ...]\n");
  process.exit(2);
}

const DESCR = {
  bool: "|b1",
  int8: "|i1",
  uint8: "|u1",
  int16: "<i2",
  uint16: "<u2",
  int32: "<i4",
  uint32: "<u4",
  int64: "<i8",
  uint64: "<u8",
  float16: "<f2",
  float32: "<f4",
  float64: "<f8",
};

// Raw bytes of whatever zarrita hands back (typed arrays and its BoolArray).
function bytesOf(data) {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

// Copies a strided view into C order. `itemsize`-byte elements; strides are in elements.
function toCOrder(src, shape, stride, itemsize) {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(n * itemsize);
  const idx = new Array(shape.length).fill(0);
  for (let k = 0; k < n; k++) {
    let off = 0;
    for (let d = 0; d < shape.length; d++) off += idx[d] * stride[d];
    out.set(src.subarray(off * itemsize, off * itemsize + itemsize), k * itemsize);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

function isCContiguous(shape, stride) {
  let step = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && stride[d] !== step) return false;
    step *= shape[d];
  }
  return true;
}

async function readOne(storePath, outPath) {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error("read_store.mjs assumes a little-endian machine");
  }
  const arr = await zarr.open(new FileSystemStore(storePath), { kind: "array" });
  if (arr.dtype === undefined || !(arr.dtype in DESCR)) {
    throw new Error(`unsupported data type ${arr.dtype}`);
  }
  const descr = DESCR[arr.dtype];
  const itemsize = Number(descr.slice(2));
  let bytes;
  if (arr.shape.length === 0) {
    // zarr.get hands a 0-d array's value back as a JS scalar, which would lose a NaN's bits:
    // take the one-element chunk instead.
    const { data } = await arr.getChunk([]);
    bytes = bytesOf(data).slice(0, itemsize);
  } else {
    const result = await zarr.get(arr);
    const raw = bytesOf(result.data);
    bytes = isCContiguous(result.shape, result.stride)
      ? raw.slice(0, result.shape.reduce((a, b) => a * b, 1) * itemsize)
      : toCOrder(raw, result.shape, result.stride, itemsize);
  }
  fs.writeFileSync(outPath, bytes);
  const codecs = JSON.parse(fs.readFileSync(`${storePath}/zarr.json`, "utf8")).codecs ?? [];
  process.stdout.write(
    `${JSON.stringify({
      dtype: descr,
      shape: arr.shape,
      attributes: arr.attrs ?? {},
      dimension_names: arr.dimensionNames ?? null,
      codecs: codecs.map((c) => c.name),
    })}\n`,
  );
}

async function main() {
  let failed = false;
  for (let i = 0; i < args.length; i += 2) {
    const storePath = args[i];
    try {
      await readOne(storePath, args[i + 1]);
    } catch (err) {
      failed = true;
      const cause = err?.cause ? `: ${err.cause?.message ?? err.cause}` : "";
      const message = `${err?.message ?? err}${cause}`.replace(/\s*\n\s*/g, " ");
      process.stdout.write(`${JSON.stringify({ store: storePath, error: message })}\n`);
      process.stderr.write(`read_store: ${storePath}: ${message}\n`);
    }
  }
  process.exit(failed ? 1 : 0);
}

main();
