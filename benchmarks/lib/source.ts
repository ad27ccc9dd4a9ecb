// The large random source file of the throughput benchmarks, made unique before each PUT.
// Large bodies are sent from it with Bun.file (sendfile), so the client spends almost no CPU.
import { closeSync, openSync, writeSync } from "node:fs";
import { randomFillSync } from "node:crypto";

const MiB = 1024 * 1024;
let stampSeq = 0;

/** Writes `size` random bytes to `path`, one MiB at a time. */
export function makeRandomFile(path: string, size: number): void {
  const buf = Buffer.alloc(MiB);
  const fd = openSync(path, "w");
  try {
    for (let off = 0; off < size; off += MiB) {
      randomFillSync(buf);
      writeSync(fd, buf, 0, Math.min(MiB, size - off));
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Rewrites the first 16 bytes of every MiB of the file open at `fd` with a fresh sequence number,
 * so no block of any run equals a block of an earlier run: Bunker's content-addressed dedup
 * never helps.
 */
export function stampSource(fd: number, size: number): void {
  const b = Buffer.alloc(16);
  const seq = ++stampSeq;
  for (let off = 0; off < size; off += MiB) {
    b.writeUInt32LE(seq, 0);
    b.writeUInt32LE(off / MiB, 4);
    b.writeDoubleLE(performance.now(), 8);
    writeSync(fd, b, 0, 16, off);
  }
}
