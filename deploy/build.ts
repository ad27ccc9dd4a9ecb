// Builds the single `bunker` binary with `bun build --compile` for x64 and arm64.
// Usage: bun deploy/build.ts [linux-x64|linux-arm64|all] [outdir]
// The binary's `bunker --version` names the git commit it was built from (BUNKER_BUILD to override).
// Two things need care (docs/stack-facts.md#compile): blake3-wasm reads its .wasm from
// __dirname at run time, so the file is embedded by a loader plugin; and the hashing Worker
// is a separate entry point that the compiled binary must contain.
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

/** The commit being built, "-dirty" when the work tree has changes: what `bunker --version` calls the build. */
function buildId(): string {
  if (process.env.BUNKER_BUILD) return process.env.BUNKER_BUILD;
  const git = Bun.spawnSync(["git", "describe", "--always", "--dirty", "--abbrev=12", "--exclude=*"], { cwd: ROOT, stderr: "pipe" });
  const id = git.stdout.toString().trim();
  if (git.exitCode !== 0 || id === "") {
    console.error(`error: cannot read the git commit (${git.stderr.toString().trim() || "git failed"}); set BUNKER_BUILD to name this build`);
    process.exit(1);
  }
  return id;
}

const TARGETS = { "linux-x64": "bun-linux-x64-baseline", "linux-arm64": "bun-linux-arm64" } as const;
type TargetName = keyof typeof TARGETS;

async function build(target: TargetName, outdir: string, build: string): Promise<string> {
  const outfile = join(outdir, `bunker-${target}`);
  const result = await Bun.build({
    // Workers are entrypoints of their own (src/util/worker-path.ts).
    entrypoints: [join(ROOT, "src/main.ts"), join(ROOT, "src/block/hash-worker.ts"), join(ROOT, "src/db/checkpoint-worker.ts")],
    compile: { target: TARGETS[target], outfile },
    minify: true,
    // src/util/version.ts reads it; undefined when run from source ("dev").
    define: { BUNKER_BUILD: JSON.stringify(build) },
    plugins: [embedBlake3Wasm],
  });
  if (!result.success) {
    for (const log of result.logs) console.error(log);
    throw new Error(`build for ${target} failed`);
  }
  return outfile;
}

const which = (process.argv[2] ?? "linux-x64") as TargetName | "all";
const outdir = process.argv[3] ?? join(ROOT, "dist");
const targets: TargetName[] = which === "all" ? ["linux-x64", "linux-arm64"] : [which];
const id = buildId();
for (const t of targets) {
  if (!(t in TARGETS)) {
    console.error(`error: unknown target ${t} (use linux-x64, linux-arm64 or all)`);
    process.exit(2);
  }
  console.log(`built ${await build(t, outdir, id)} (build ${id})`);
}
