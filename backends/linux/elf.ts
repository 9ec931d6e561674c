// Just enough of ELF to know what a dynamically linked program needs at run
// time: its interpreter (PT_INTERP), the sonames it needs (DT_NEEDED) and its
// library search paths (DT_RPATH / DT_RUNPATH). Reads headers through a
// positional reader, never the whole file (libc is megabytes).
//
//   ELF header      e_ident[4] class (1 = 32-bit, 2 = 64-bit), [5] data
//                   (1 = little, 2 = big endian); e_machine; e_phoff,
//                   e_phentsize, e_phnum
//   program headers PT_LOAD (vaddr -> file offset), PT_INTERP (a path),
//                   PT_DYNAMIC (the dynamic section)
//   dynamic section (d_tag, d_val) pairs up to DT_NULL; DT_STRTAB is a
//                   vaddr, the other string entries offsets into it

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_RPATH = 15;
const DT_RUNPATH = 29;
const MAX_PHNUM = 256;
const MAX_DYNAMIC = 1 << 16;
const MAX_STRING = 4096;

/** Reads `length` bytes at `offset` (fewer at the end of the file). */
export type ReadAt = (offset: number, length: number) => Buffer;

export interface ElfInfo {
  bits: 32 | 64;
  littleEndian: boolean;
  machine: number;
  /** PT_INTERP, or null for a static program. */
  interpreter: string | null;
  needed: string[];
  rpath: string[];
  runpath: string[];
}

class Fields {
  constructor(
    private readonly buf: Buffer,
    private readonly le: boolean,
  ) {}
  u16(o: number): number {
    return this.le ? this.buf.readUInt16LE(o) : this.buf.readUInt16BE(o);
  }
  u32(o: number): number {
    return this.le ? this.buf.readUInt32LE(o) : this.buf.readUInt32BE(o);
  }
  u64(o: number): number {
    const v = this.le ? this.buf.readBigUInt64LE(o) : this.buf.readBigUInt64BE(o);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
  }
  word(o: number, bits: 32 | 64): number {
    return bits === 64 ? this.u64(o) : this.u32(o);
  }
}

function cString(read: ReadAt, offset: number): string {
  const b = read(offset, MAX_STRING);
  const end = b.indexOf(0);
  return b.subarray(0, end < 0 ? b.length : end).toString('utf8');
}

/** Parses the headers of an ELF file; null when it is not ELF (a script, garbage). */
export function readElf(read: ReadAt): ElfInfo | null {
  const h = read(0, 64);
  if (h.length < 52 || h[0] !== 0x7f || h.toString('latin1', 1, 4) !== 'ELF') return null;
  const bits = h[4] === 2 ? 64 : h[4] === 1 ? 32 : null;
  const littleEndian = h[5] === 1 ? true : h[5] === 2 ? false : null;
  if (bits === null || littleEndian === null || (bits === 64 && h.length < 64)) return null;
  const f = new Fields(h, littleEndian);
  const machine = f.u16(18);
  const phoff = bits === 64 ? f.u64(32) : f.u32(28);
  const phentsize = f.u16(bits === 64 ? 54 : 42);
  const phnum = Math.min(f.u16(bits === 64 ? 56 : 44), MAX_PHNUM);
  const info: ElfInfo = { bits, littleEndian, machine, interpreter: null, needed: [], rpath: [], runpath: [] };
  if (phentsize < (bits === 64 ? 56 : 32)) return info;
  const ph = read(phoff, phentsize * phnum);
  const p = new Fields(ph, littleEndian);
  const loads: Array<{ vaddr: number; offset: number; size: number }> = [];
  let dynamic: { offset: number; size: number } | null = null;
  for (let i = 0; i < phnum && (i + 1) * phentsize <= ph.length; i++) {
    const o = i * phentsize;
    const type = p.u32(o);
    const offset = bits === 64 ? p.u64(o + 8) : p.u32(o + 4);
    const vaddr = bits === 64 ? p.u64(o + 16) : p.u32(o + 8);
    const filesz = bits === 64 ? p.u64(o + 32) : p.u32(o + 16);
    if (type === PT_LOAD) loads.push({ vaddr, offset, size: filesz });
    else if (type === PT_INTERP) info.interpreter = cString(read, offset);
    else if (type === PT_DYNAMIC) dynamic = { offset, size: Math.min(filesz, MAX_DYNAMIC) };
  }
  if (!dynamic) return info;
  const entSize = bits === 64 ? 16 : 8;
  const dyn = read(dynamic.offset, dynamic.size);
  const d = new Fields(dyn, littleEndian);
  let strtab = -1;
  const strings: Array<[number, number]> = [];
  for (let o = 0; o + entSize <= dyn.length; o += entSize) {
    const tag = d.word(o, bits);
    const val = d.word(o + entSize / 2, bits);
    if (tag === DT_NULL) break;
    if (tag === DT_STRTAB) strtab = val;
    else if (tag === DT_NEEDED || tag === DT_RPATH || tag === DT_RUNPATH) strings.push([tag, val]);
  }
  const seg = loads.find((l) => strtab >= l.vaddr && strtab < l.vaddr + l.size);
  if (!seg) return info;
  const base = strtab - seg.vaddr + seg.offset;
  for (const [tag, off] of strings) {
    const s = cString(read, base + off);
    if (tag === DT_NEEDED) info.needed.push(s);
    else (tag === DT_RPATH ? info.rpath : info.runpath).push(...s.split(':').filter(Boolean));
  }
  return info;
}
