// Allocator settings of the server process. Bun's allocator (mimalloc) hands freed memory back
// to the OS shortly after it is freed; a node that receives, encrypts and stores blocks frees
// and reallocates megabytes per second (node:crypto and socket reads allocate every output), and
// on VMs each page faulted back in costs more than the copy that fills it. Measured on 3 local
// nodes, RF 3 PUT of 256 MiB, same machine and hour: default 27-40 MiB/s, a 1 s delay 32-56,
// a 10 s delay 43-59, never purging 57-83 (a replica's CPU per MiB fell from ~11 to ~7 ms).
// Never purging keeps the process's resident memory at its peak after a burst (peak itself
// unchanged: 240 vs 241 MiB on the RF 3 coordinator); every in-flight buffer is bounded, so that
// peak is too. To have memory handed back instead, set MIMALLOC_PURGE_DELAY (in ms) before starting.
// mimalloc reads its options from the environment once, at process start: the server therefore
// replaces itself (execve, same pid) with a copy that has them set, unless the operator set them.
export const ALLOCATOR_ENV: Readonly<Record<string, string>> = { MIMALLOC_PURGE_DELAY: "-1" };

/** Re-executes this process with ALLOCATOR_ENV when it is not set yet; returns otherwise. */
export function applyAllocatorSettings(): void {
  const missing = Object.keys(ALLOCATOR_ENV).some((k) => process.env[k] === undefined);
  if (!missing || typeof process.execve !== "function") return;
  // A `bun build --compile` binary inserts its embedded script path itself.
  const compiled = process.argv[1]?.startsWith("/$bunfs/") === true;
  const args = process.argv.slice(compiled ? 2 : 1);
  try {
    process.execve(process.execPath, [process.execPath, ...args], { ...process.env, ...ALLOCATOR_ENV });
  } catch (err) {
    // Only speed is at stake: run on with the allocator's defaults.
    process.stderr.write(`bunker: could not restart with allocator settings (${(err as Error).message}); going on without them\n`);
  }
}
