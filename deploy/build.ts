// Builds the single `bunker` binary with `bun build --compile` for x64 and arm64.
// Usage: bun deploy/build.ts [linux-x64|linux-arm64|all] [outdir]
// The binary's `bunker --version` names the git commit it was built from (BUNKER_BUILD to override).
// Three things need care (docs/stack-facts.md#compile): blake3-wasm reads its .wasm from
// __dirname at run time, so the file is embedded by a loader plugin; the Workers are separate
// entry points that the compiled binary must contain; and the options below are chosen by
// measurement (docs/targets.md has the figures).
import type { BunPlugin } from "bun";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");

const embedBlake3Wasm: BunPlugin = {
  name: "embed-blake3-wasm",
  setup(build) {
    build.onLoad({ filter: /blake3-wasm[\\/]dist[\\/]wasm[\\/]nodejs[\\/]blake3_js\.js$/ }, async (args) => {
      const source = await Bun.file(args.path).text();
      const patched = source.replace(
        /const path = require\('path'\)\.join\(__dirname, 'blake3_js_bg\.wasm'\);\s*const bytes = require\('fs'\)\.readFileSync\(path\);/,
        "const bytes = require('fs').readFileSync(require('./blake3_js_bg.wasm'));",
      );
      if (patched === source) throw new Error("blake3-wasm glue changed: cannot embed its wasm (update deploy/build.ts)");
      return { loader: "js", contents: patched };
    });
  },
};

/**
 * zstd-codec is src/block/codec.ts's fallback for runtimes without a built-in zstd; the binary's
 * Bun has one, so the codec is never loaded there. Left in, it was 1.5 MiB of inlined wasm that
 * the binary carried and, at every start, read into memory with the rest of the bundle (idle RSS
 * 1.5 MiB higher, measured: docs/targets.md#build-options). The binary gets a stand-in whose use
 * fails with a clear error; an earlier build dropped only the codec's asm.js copy (5.1 MiB).
 */
const dropZstdCodec: BunPlugin = {
  name: "drop-zstd-codec",
  setup(build) {
    build.onResolve({ filter: /^zstd-codec$/ }, () => ({ path: "zstd-codec", namespace: "bunker-absent" }));
    build.onLoad({ filter: /.*/, namespace: "bunker-absent" }, () => ({
      loader: "js",
      contents: "export const ZstdCodec = { run() { throw new Error('zstd-codec is not in the bunker binary (its Bun has a built-in zstd)'); } };",
    }));
  },
};

/** The commit being built, "-dirty" when the work tree has changes: what `bunker --version` calls the build. */
function buildId(): string {
  if (process.env.BUNKER_BUILD) return process.env.BUNKER_BUILD;
  const git = Bun.spawnSync(["git", "describe", "--always", "--dirty", "--abbrev=12", "--exclude=*"], { cwd: ROOT, stderr: "pipe" });
  const id = git.stdout.toString().trim();
  if (git.exitCode !== 0 || id === "") throw new Error(`cannot read the git commit (${git.stderr.toString().trim() || "git failed"}); set BUNKER_BUILD to name this build`);
  return id;
}

export const TARGETS = { "linux-x64": "bun-linux-x64-baseline", "linux-arm64": "bun-linux-arm64" } as const;
export type TargetName = keyof typeof TARGETS;

/**
 * JavaScriptCore's tier-up thresholds are multiplied by this until `bunker server` serves
 * (src/cli/index.ts sets the normal policy then): start-up code runs once, and compiling it
 * cost more than it saved. Measured on this machine, CPU to the first S3 answer 234 -> 177 ms
 * and idle RSS 64.5 -> 60.1 MiB (medians of 9; 4 gained nothing, 16 and 100 no more than 8).
 */
const START_JIT_POLICY = 8;

/**
 * Builds bunker-<target> in outdir and returns its path. Options, measured on this machine
 * (docs/targets.md#build-options): `bytecode` ships JavaScriptCore bytecode beside the source so
 * that the 2.6 MB bundle is not parsed and compiled at every start (CPU to the first S3 answer
 * 301 -> 234 ms, `bunker --version` 180 -> 90 ms, for 6 MiB more binary); it needs the ESM
 * output format because main.ts awaits at top level.
 * `minify` shrinks the source kept beside the bytecode (for toString and error positions).
 * The binary reads no `.env` or `bunfig.toml` from the directory it is started in: its
 * configuration is bunker.toml and BUNKER_* variables only, wherever it runs.
 */
export async function buildBinary(target: TargetName, outdir: string, build: string = buildId()): Promise<string> {
  const outfile = join(outdir, `bunker-${target}`);
  const result = await Bun.build({
    // Workers are entrypoints of their own (src/util/worker-path.ts).
    entrypoints: [join(ROOT, "src/main.ts"), join(ROOT, "src/block/hash-worker.ts"), join(ROOT, "src/db/checkpoint-worker.ts")],
    compile: { target: TARGETS[target], outfile, autoloadDotenv: false, autoloadBunfig: false, jitPolicy: START_JIT_POLICY },
    minify: true,
    bytecode: true,
    format: "esm",
    // src/util/version.ts reads it; undefined when run from source ("dev").
    define: { BUNKER_BUILD: JSON.stringify(build) },
    plugins: [embedBlake3Wasm, dropZstdCodec],
  });
  if (!result.success) {
    for (const log of result.logs) console.error(log);
    throw new Error(`build for ${target} failed`);
  }
  return outfile;
}

if (import.meta.main) {
  const which = process.argv[2] ?? "linux-x64";
  const outdir = process.argv[3] ?? join(ROOT, "dist");
  const targets = which === "all" ? (Object.keys(TARGETS) as TargetName[]) : [which];
  for (const t of targets) {
    if (!(t in TARGETS)) {
      console.error(`error: unknown target ${t} (use linux-x64, linux-arm64 or all)`);
      process.exit(2);
    }
  }
  try {
    const id = buildId();
    for (const t of targets) console.log(`built ${await buildBinary(t as TargetName, outdir, id)} (build ${id})`);
  } catch (err) {
    console.error(`error: ${(err as Error).message}`);
    process.exit(1);
  }
}
