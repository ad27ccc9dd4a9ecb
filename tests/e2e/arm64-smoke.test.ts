// arm64, proven (issue 13): builds the linux-arm64 binary the way a release is built
// (deploy/build.ts; cross-compiling fetches Bun's arm64 runtime from the npm registry once)
// and runs it under qemu-user, as a Cortex-A53: a node starts, a key and a bucket are made
// through its own CLI, a 4 KiB and a 20 MiB object go in and come back with the same SHA-256
// (and an ETag that is their MD5, computed by the hash worker embedded in the binary), and
// `bunker status` reports a healthy node. The same runs natively on the linux-x64 binary on an
// x64 machine: no other test runs a compiled binary.
// The arm64 part needs Debian's qemu-user and libc6-arm64-cross (.ci/run installs them, and
// makes their absence a failure); it is skipped, saying so, only on a machine without them.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { Subprocess } from "bun";
import { buildBinary, type TargetName } from "../../deploy/build.ts";
import { expectOk, hashStream, md5Hex, MiB, KiB, run, sha256Hex } from "../helpers/clients";
import { freePort } from "../helpers/server";
import { signedFetchTo, type SigningTarget } from "../helpers/signed";

const QEMU = Bun.which("qemu-aarch64");
/** Where Debian's libc6-arm64-cross puts the arm64 loader and libc (qemu's -L). */
const SYSROOT = "/usr/aarch64-linux-gnu";
/**
 * The emulated CPU: the Cortex-A53 (ARMv8.0-A, no later extensions) of the Raspberry Pi 3 and
 * Zero 2 W, the oldest 64-bit boards; qemu's default CPU has every extension, so a binary that
 * needed a newer core (Bun 1.1.16 did, oven-sh/bun#12076) would pass there and fail on a Pi.
 */
const CPU = "cortex-a53";
const AVAILABLE = QEMU !== null && existsSync(join(SYSROOT, "lib", "ld-linux-aarch64.so.1"));
const MISSING = "needs qemu-aarch64 (Debian package qemu-user) and an arm64 libc in /usr/aarch64-linux-gnu (libc6-arm64-cross)";
/** .ci/run sets it: there the emulator was installed, and its absence fails the run. */
const REQUIRED = process.env.BUNKER_ARM64_SMOKE === "required";
if (!AVAILABLE && !REQUIRED) console.warn(`arm64 smoke test SKIPPED: ${MISSING}; .ci/run installs both`);

test.skipIf(AVAILABLE || !REQUIRED)("the emulator is installed where the smoke test is required (CI)", () => {
  throw new Error(`BUNKER_ARM64_SMOKE=required, but the arm64 smoke test ${MISSING}`);
});

/** The whole file; measured here ~45 s (arm64: build 6 s, start 5 s, each CLI call ~3 s under emulation; x64 ~10 s). */
setDefaultTimeout(110_000);
/** Building includes a one-off ~100 MB download of Bun's runtime for a foreign target on a fresh machine. */
const BUILD_DEADLINE_MS = 90_000;
/** Start to first S3 answer: measured 4.5 s here under emulation. */
const START_DEADLINE_MS = 45_000;
/** One CLI call (the runtime starts for each): measured ~3 s under emulation. */
const CLI_DEADLINE_MS = 30_000;
/** One transfer of the 20 MiB object. */
const TRANSFER_DEADLINE_MS = 45_000;
const REGION = "garage";

const dirs: string[] = [];
const servers: Subprocess[] = [];
afterAll(async () => {
  for (const server of servers) {
    if (server.exitCode !== null) continue;
    server.kill("SIGTERM");
    await Promise.race([server.exited, Bun.sleep(10_000)]);
    server.kill("SIGKILL");
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/**
 * The smoke test of one target's binary; `runner` is what runs a program of that target
 * here (qemu for arm64, nothing natively).
 */
function smoke(target: TargetName, runner: string[]): void {
  const build = `${target}-smoke`;
  let binary: string;
  let configPath: string;
  let s3Port: number;
  let dir: string;
  const bunker = (...args: string[]) => run([...runner, binary, "-c", configPath, ...args], { timeoutMs: CLI_DEADLINE_MS });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), `bunker-${target}-`));
    dirs.push(dir);
    const built = buildBinary(target, dir, build);
    binary = await Promise.race([built, Bun.sleep(BUILD_DEADLINE_MS).then(() => Promise.reject(new Error(`build did not finish in ${BUILD_DEADLINE_MS} ms`)))]);
    s3Port = await freePort();
    const [adminPort, rpcPort] = [await freePort(), await freePort()];
    configPath = join(dir, "bunker.toml");
    writeFileSync(
      configPath,
      [
        `metadata_dir = "${join(dir, "meta")}"`,
        `data_dir = "${join(dir, "data")}"`,
        `rpc_bind_addr = "127.0.0.1:${rpcPort}"`,
        `[s3_api]`,
        `api_bind_addr = "127.0.0.1:${s3Port}"`,
        `s3_region = "${REGION}"`,
        `[admin]`,
        `api_bind_addr = "127.0.0.1:${adminPort}"`,
        `admin_token = "smoke-${randomBytes(8).toString("hex")}"`,
      ].join("\n") + "\n",
    );
  });

  test("--version names the build", async () => {
    const r = expectOk(await bunker("--version"), "bunker --version");
    expect(r.stdout).toContain(`(build ${build})`);
  });

  test("a node starts, takes a key and a bucket from its CLI, stores and returns objects intact, and reports healthy", async () => {
    let output = "";
    const server = Bun.spawn([...runner, binary, "-c", configPath, "server"], { cwd: dir, stdout: "pipe", stderr: "pipe" });
    servers.push(server);
    for (const s of [server.stdout, server.stderr] as ReadableStream<Uint8Array>[]) {
      void (async () => {
        for await (const c of s) output = (output + new TextDecoder().decode(c)).slice(-20_000);
      })();
    }
    const deadline = Date.now() + START_DEADLINE_MS;
    for (;;) {
      const up = await fetch(`http://127.0.0.1:${s3Port}/`).then(
        () => true,
        () => false,
      );
      if (up) break;
      if (server.exitCode !== null || Date.now() > deadline) throw new Error(`the ${target} server did not serve S3 within ${START_DEADLINE_MS} ms:\n${output}`);
      await Bun.sleep(100);
    }

    const key = JSON.parse(expectOk(await bunker("key", "create", "smoke", "--json"), "key create").stdout) as { accessKeyId: string; secretAccessKey: string };
    expect(key.secretAccessKey).toBeString();
    expectOk(await bunker("bucket", "create", "smoke"), "bucket create");
    expectOk(await bunker("bucket", "allow", "smoke", "--read", "--write", "--key", key.accessKeyId), "bucket allow");

    const to: SigningTarget = { address: `127.0.0.1:${s3Port}`, region: REGION, accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey };
    for (const [name, size] of [
      ["small", 4 * KiB],
      ["large", 20 * MiB],
    ] as const) {
      const body = new Uint8Array(randomBytes(size));
      const signal = AbortSignal.timeout(TRANSFER_DEADLINE_MS);
      const put = await signedFetchTo(to, "PUT", `/smoke/${name}`, { body, signal });
      expect([name, put.status, await put.text()]).toEqual([name, 200, ""]);
      expect(put.headers.get("etag")).toBe(`"${md5Hex(body)}"`);
      const get = await signedFetchTo(to, "GET", `/smoke/${name}`, { signal });
      expect(get.status).toBe(200);
      expect(await hashStream(get.body!)).toEqual({ size, sha256: sha256Hex(body) });
    }

    const status = expectOk(await bunker("status"), "status");
    expect(status.stdout).toMatch(/Cluster health:\s+healthy/);
    expect(status.stdout).toContain("Storage nodes up:             1/1");
  });
}

describe.skipIf(!AVAILABLE)("the linux-arm64 binary under qemu-user (Cortex-A53)", () => {
  smoke("linux-arm64", [QEMU!, "-cpu", CPU, "-L", SYSROOT]);
});

describe.skipIf(process.arch !== "x64")("the linux-x64 binary, natively", () => {
  smoke("linux-x64", []);
});
