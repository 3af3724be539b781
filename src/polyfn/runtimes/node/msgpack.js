'use strict';
// A small msgpack encoder/decoder for the instance protocol (the types polyfn's frames use: nil, bool,
// int, float, str, bin, array, map). Integers beyond 2^53 decode as BigInt; ext types are rejected.

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8');

class Writer {
  constructor() {
    this.buf = Buffer.allocUnsafe(256);
    this.pos = 0;
  }
  ensure(n) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const nb = Buffer.allocUnsafe(size);
    this.buf.copy(nb, 0, 0, this.pos);
    this.buf = nb;
  }
  u8(v) { this.ensure(1); this.buf[this.pos++] = v; }
  u16(v) { this.ensure(2); this.buf.writeUInt16BE(v, this.pos); this.pos += 2; }
  u32(v) { this.ensure(4); this.buf.writeUInt32BE(v, this.pos); this.pos += 4; }
  bytes(b) { this.ensure(b.length); this.buf.set(b, this.pos); this.pos += b.length; }
}

function writeValue(w, v) {
  if (v === null || v === undefined) return w.u8(0xc0);
  switch (typeof v) {
    case 'boolean':
      return w.u8(v ? 0xc3 : 0xc2);
    case 'number':
      if (Number.isInteger(v) && Number.isSafeInteger(v)) return writeInt(w, v);
      w.u8(0xcb); w.ensure(8); w.buf.writeDoubleBE(v, w.pos); w.pos += 8;
      return undefined;
    case 'bigint':
      if (v >= 0n) { w.u8(0xcf); w.ensure(8); w.buf.writeBigUInt64BE(v, w.pos); }
      else { w.u8(0xd3); w.ensure(8); w.buf.writeBigInt64BE(v, w.pos); }
      w.pos += 8;
      return undefined;
    case 'string':
      return writeStr(w, v);
    case 'object':
      if (v instanceof Uint8Array) return writeBin(w, v);
      if (v instanceof ArrayBuffer) return writeBin(w, new Uint8Array(v));
      if (Array.isArray(v)) {
        writeHead(w, v.length, 0x90, 0xdc, 0xdd);
        for (const item of v) writeValue(w, item);
        return undefined;
      }
      if (v instanceof Map) {
        writeHead(w, v.size, 0x80, 0xde, 0xdf);
        for (const [k, item] of v) { writeValue(w, k); writeValue(w, item); }
        return undefined;
      }
      if (typeof v.toJSON === 'function') return writeValue(w, v.toJSON());
      {
        const keys = Object.keys(v).filter((k) => v[k] !== undefined && typeof v[k] !== 'function');
        writeHead(w, keys.length, 0x80, 0xde, 0xdf);
        for (const k of keys) { writeStr(w, k); writeValue(w, v[k]); }
      }
      return undefined;
    default:
      return w.u8(0xc0); // functions, symbols: nil (as JSON would drop them)
  }
}

function writeHead(w, n, fix, c16, c32) {
  if (n < 16) w.u8(fix | n);
  else if (n < 0x10000) { w.u8(c16); w.u16(n); }
  else { w.u8(c32); w.u32(n); }
}

function writeInt(w, v) {
  if (v >= 0) {
    if (v < 128) w.u8(v);
    else if (v < 0x100) { w.u8(0xcc); w.u8(v); }
    else if (v < 0x10000) { w.u8(0xcd); w.u16(v); }
    else if (v < 0x100000000) { w.u8(0xce); w.u32(v); }
    else { w.u8(0xcf); w.ensure(8); w.buf.writeBigUInt64BE(BigInt(v), w.pos); w.pos += 8; }
  } else if (v >= -32) w.u8(v & 0xff);
  else if (v >= -128) { w.u8(0xd0); w.ensure(1); w.buf.writeInt8(v, w.pos); w.pos += 1; }
  else if (v >= -32768) { w.u8(0xd1); w.ensure(2); w.buf.writeInt16BE(v, w.pos); w.pos += 2; }
  else if (v >= -2147483648) { w.u8(0xd2); w.ensure(4); w.buf.writeInt32BE(v, w.pos); w.pos += 4; }
  else { w.u8(0xd3); w.ensure(8); w.buf.writeBigInt64BE(BigInt(v), w.pos); w.pos += 8; }
}

function writeStr(w, s) {
  const b = enc.encode(s);
  const n = b.length;
  if (n < 32) w.u8(0xa0 | n);
  else if (n < 0x100) { w.u8(0xd9); w.u8(n); }
  else if (n < 0x10000) { w.u8(0xda); w.u16(n); }
  else { w.u8(0xdb); w.u32(n); }
  w.bytes(b);
}

function writeBin(w, b) {
  const n = b.length;
  if (n < 0x100) { w.u8(0xc4); w.u8(n); }
  else if (n < 0x10000) { w.u8(0xc5); w.u16(n); }
  else { w.u8(0xc6); w.u32(n); }
  w.bytes(b);
}

function encode(value) {
  const w = new Writer();
  writeValue(w, value);
  return w.buf.subarray(0, w.pos);
}

class Reader {
  constructor(buf) {
    this.buf = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = 0;
  }
  need(n) {
    if (this.pos + n > this.buf.length) throw new Error('msgpack: truncated input');
  }
  value() {
    this.need(1);
    const b = this.buf[this.pos++];
    if (b < 0x80) return b;
    if (b >= 0xe0) return b - 0x100;
    if ((b & 0xf0) === 0x80) return this.map(b & 0x0f);
    if ((b & 0xf0) === 0x90) return this.array(b & 0x0f);
    if ((b & 0xe0) === 0xa0) return this.str(b & 0x1f);
    const buf = this.buf;
    let v;
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: this.need(1); return this.bin(buf[this.pos++]);
      case 0xc5: this.need(2); v = buf.readUInt16BE(this.pos); this.pos += 2; return this.bin(v);
      case 0xc6: this.need(4); v = buf.readUInt32BE(this.pos); this.pos += 4; return this.bin(v);
      case 0xca: this.need(4); v = buf.readFloatBE(this.pos); this.pos += 4; return v;
      case 0xcb: this.need(8); v = buf.readDoubleBE(this.pos); this.pos += 8; return v;
      case 0xcc: this.need(1); return buf[this.pos++];
      case 0xcd: this.need(2); v = buf.readUInt16BE(this.pos); this.pos += 2; return v;
      case 0xce: this.need(4); v = buf.readUInt32BE(this.pos); this.pos += 4; return v;
      case 0xcf: this.need(8); v = buf.readBigUInt64BE(this.pos); this.pos += 8; return small(v);
      case 0xd0: this.need(1); v = buf.readInt8(this.pos); this.pos += 1; return v;
      case 0xd1: this.need(2); v = buf.readInt16BE(this.pos); this.pos += 2; return v;
      case 0xd2: this.need(4); v = buf.readInt32BE(this.pos); this.pos += 4; return v;
      case 0xd3: this.need(8); v = buf.readBigInt64BE(this.pos); this.pos += 8; return small(v);
      case 0xd9: this.need(1); return this.str(buf[this.pos++]);
      case 0xda: this.need(2); v = buf.readUInt16BE(this.pos); this.pos += 2; return this.str(v);
      case 0xdb: this.need(4); v = buf.readUInt32BE(this.pos); this.pos += 4; return this.str(v);
      case 0xdc: this.need(2); v = buf.readUInt16BE(this.pos); this.pos += 2; return this.array(v);
      case 0xdd: this.need(4); v = buf.readUInt32BE(this.pos); this.pos += 4; return this.array(v);
      case 0xde: this.need(2); v = buf.readUInt16BE(this.pos); this.pos += 2; return this.map(v);
      case 0xdf: this.need(4); v = buf.readUInt32BE(this.pos); this.pos += 4; return this.map(v);
      default: throw new Error(`msgpack: unsupported type byte 0x${b.toString(16)}`);
    }
  }
  str(n) {
    this.need(n);
    const s = dec.decode(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
  bin(n) {
    this.need(n);
    const b = Buffer.from(this.buf.subarray(this.pos, this.pos + n)); // a copy: the frame buffer is reused
    this.pos += n;
    return b;
  }
  array(n) {
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.value();
    return out;
  }
  map(n) {
    const out = {};
    for (let i = 0; i < n; i++) {
      const k = this.value();
      const v = this.value();
      if (k === '__proto__') Object.defineProperty(out, k, { value: v, enumerable: true, writable: true });
      else out[k] = v;
    }
    return out;
  }
}

function small(v) {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
}

function decode(buf) {
  const r = new Reader(buf);
  const v = r.value();
  if (r.pos !== r.buf.length) throw new Error('msgpack: trailing bytes');
  return v;
}

module.exports = { encode, decode };
