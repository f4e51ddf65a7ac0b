/**
 * The few ELF header facts that tell whether a binary will run on a target: word size, machine,
 * ARM float ABI, and whether it needs a dynamic loader (a busybox that does would die once the old
 * root is overwritten, FIELD-NOTES §1).
 */

export interface ElfInfo {
  bits: 32 | 64;
  littleEndian: boolean;
  /** e_machine: 62 x86-64, 183 AArch64, 40 ARM, 243 RISC-V. */
  machine: number;
  flags: number;
  /** No PT_INTERP program header: runs without ld.so and libc from the root filesystem. */
  isStatic: boolean;
}

export const EM = { X86_64: 62, AARCH64: 183, ARM: 40, RISCV: 243 } as const;

const EF_ARM_ABI_FLOAT_SOFT = 0x200;
const EF_ARM_ABI_FLOAT_HARD = 0x400;
const PT_INTERP = 3;

export function readElf(bytes: Uint8Array): ElfInfo {
  if (bytes.length < 52 || bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) {
    throw new Error("not an ELF file");
  }
  const bits = bytes[4] === 2 ? 64 : bytes[4] === 1 ? 32 : undefined;
  if (!bits) throw new Error(`unknown ELF class ${bytes[4]}`);
  const littleEndian = bytes[5] === 1;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (at: number) => view.getUint16(at, littleEndian);
  const u32 = (at: number) => view.getUint32(at, littleEndian);
  const word = (at: number) => (bits === 64 ? Number(view.getBigUint64(at, littleEndian)) : u32(at));

  const machine = u16(18);
  const phoff = word(bits === 64 ? 32 : 28);
  const flags = u32(bits === 64 ? 48 : 36);
  const phentsize = u16(bits === 64 ? 54 : 42);
  const phnum = u16(bits === 64 ? 56 : 44);
  if (phoff + phnum * phentsize > bytes.length) throw new Error("ELF program headers lie outside the file");
  let isStatic = true;
  for (let i = 0; i < phnum; i++) {
    if (u32(phoff + i * phentsize) === PT_INTERP) isStatic = false;
  }
  return { bits, littleEndian, machine, flags, isStatic };
}

/** What a busybox for `arch` (a Debian architecture name) must look like. */
export const ELF_EXPECTED = {
  amd64: { bits: 64, machine: EM.X86_64 },
  arm64: { bits: 64, machine: EM.AARCH64 },
  armhf: { bits: 32, machine: EM.ARM, armFloat: EF_ARM_ABI_FLOAT_HARD },
  armel: { bits: 32, machine: EM.ARM, armFloat: EF_ARM_ABI_FLOAT_SOFT },
  riscv64: { bits: 64, machine: EM.RISCV },
} as const satisfies Record<string, { bits: 32 | 64; machine: number; armFloat?: number }>;

/** Why `bytes` is not a static little-endian executable for `arch`, or undefined when it is. */
export function elfMismatch(bytes: Uint8Array, arch: keyof typeof ELF_EXPECTED): string | undefined {
  let info: ElfInfo;
  try {
    info = readElf(bytes);
  } catch (error) {
    return (error as Error).message;
  }
  const want: { bits: number; machine: number; armFloat?: number } = ELF_EXPECTED[arch];
  if (!info.littleEndian) return "big-endian ELF";
  if (info.bits !== want.bits || info.machine !== want.machine) {
    return `ELF is ${info.bits}-bit machine ${info.machine}, expected ${want.bits}-bit machine ${want.machine}`;
  }
  if (want.armFloat && (info.flags & (EF_ARM_ABI_FLOAT_SOFT | EF_ARM_ABI_FLOAT_HARD)) !== want.armFloat) {
    return `ARM float ABI flags 0x${info.flags.toString(16)} do not match ${arch}`;
  }
  if (!info.isStatic) return "dynamically linked (has PT_INTERP)";
  return undefined;
}
