// The large random source file of the throughput benchmarks, made unique before each PUT.
import { writeSync } from "node:fs";

const MiB = 1024 * 1024;
let stampSeq = 0;

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
