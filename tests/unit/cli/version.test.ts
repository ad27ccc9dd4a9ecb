// The build stamp of `bunker --version`: deploy/build.ts defines BUNKER_BUILD when it bundles;
// this bundles src/util/version.ts the same way (without compiling a binary) and runs it.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../../package.json" with { type: "json" };

const dir = mkdtempSync(join(tmpdir(), "bunker-version-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("a bundle built with BUNKER_BUILD defined reports that build; from source it is dev", async () => {
  const entry = join(dir, "entry.ts");
  writeFileSync(entry, `import { VERSION_LINE, VERSION_WITH_BUILD } from ${JSON.stringify(join(import.meta.dir, "../../../src/util/version.ts"))};\nconsole.log(VERSION_LINE + "|" + VERSION_WITH_BUILD);\n`);
  const run = async (path: string) => {
    const p = Bun.spawn([process.execPath, path], { stdout: "pipe" });
    return (await new Response(p.stdout).text()).trim();
  };
  expect(await run(entry)).toBe(`bunker ${pkg.version} (build dev)|${pkg.version}+dev`);
  const built = await Bun.build({ entrypoints: [entry], outdir: join(dir, "out"), target: "bun", define: { BUNKER_BUILD: JSON.stringify("0123abcd") } });
  expect(built.success).toBe(true);
  expect(await run(built.outputs[0]!.path)).toBe(`bunker ${pkg.version} (build 0123abcd)|${pkg.version}+0123abcd`);
});
