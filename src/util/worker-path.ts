// Where a Worker's module is, from source and inside a compiled binary.
// `bun build --compile` does not discover Worker targets itself: the build MUST list every
// worker as an extra entrypoint (deploy/build.ts). Verified on Bun 1.4.5: inside the binary every
// bundled module's import.meta.url is the binary's root file, so `new URL("./x-worker.ts",
// import.meta.url)` points at a file that does not exist; the worker is embedded as
// <root>/<dir>/<name>.js (path relative to the entrypoints' common directory), which is looked
// up explicitly here.
import { existsSync } from "node:fs";

/**
 * The specifier to pass to `new Worker()` for src/<dir>/<name>.ts; `sourceUrl` is
 * `new URL("./<name>.ts", import.meta.url)` computed by the caller (only it knows its own URL).
 */
export function workerSpecifier(dir: string, name: string, sourceUrl: URL): string | URL {
  if (!Bun.isStandaloneExecutable) return sourceUrl;
  // The root is src/ when built from src/main.ts, the repository root when built from elsewhere.
  for (const rel of [`${dir}/${name}.js`, `src/${dir}/${name}.js`, `${name}.js`]) {
    const path = `${import.meta.dir}/${rel}`;
    if (existsSync(path)) return path;
  }
  throw new Error(`worker ${dir}/${name} is not embedded in this binary: build with src/${dir}/${name}.ts as an entrypoint`);
}
