// A fake admin API for CLI tests: a Bun.serve on port 0 that records every request and
// answers from per-endpoint handlers, reached through a temporary TOML config like a real
// deployment. Tests replace handlers in `routes`; reset() restores the defaults.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli, type CliIo } from "../../../src/cli/index";

export interface Recorded {
  method: string;
  endpoint: string;
  query: Record<string, string>;
  body: unknown;
  auth: string | null;
}

export type Handler = (query: Record<string, string>, body: any) => Response;

export const json = (value: unknown, status = 200) => Response.json(value, { status });
export const apiError = (status: number, code: string, message: string) =>
  json({ code, message, path: "/v2/..." }, status);

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in-process, capturing its output and exit code. */
export async function runCapturing(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const io: CliIo = {
    stdout: async (t) => void (stdout += t),
    stderr: async (t) => void (stderr += t),
    env,
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr };
}

export class FakeAdmin {
  requests: Recorded[] = [];
  routes: Record<string, Handler>;
  /** Answer for every request instead of the route, to test error paths. */
  override: Response | undefined;
  readonly dir: string;
  readonly configPath: string;
  private readonly server: ReturnType<typeof Bun.serve>;

  constructor(
    readonly token: string,
    private readonly defaults: () => Record<string, Handler>,
  ) {
    this.routes = defaults();
    this.server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: async (req) => {
        const url = new URL(req.url);
        const endpoint = url.pathname.replace(/^\/v2\//, "");
        const text = await req.text();
        const body = text ? JSON.parse(text) : undefined;
        const query = Object.fromEntries(url.searchParams);
        this.requests.push({ method: req.method, endpoint, query, body, auth: req.headers.get("authorization") });
        if (this.override) return this.override;
        if (req.headers.get("authorization") !== `Bearer ${this.token}`) return apiError(403, "Forbidden", "bad token");
        const route = this.routes[endpoint];
        return route ? route(query, body) : apiError(400, "UnknownEndpoint", endpoint);
      },
    });
    this.dir = mkdtempSync(join(tmpdir(), "bunker-cli-"));
    this.configPath = this.writeConfig("main.toml", `127.0.0.1:${this.server.port}`, token);
  }

  get port(): number {
    return this.server.port!;
  }

  writeConfig(name: string, adminAddr: string, token?: string): string {
    const path = join(this.dir, name);
    const tokenLine = token === undefined ? "" : `admin_token = "${token}"\n`;
    writeFileSync(
      path,
      `metadata_dir = "${join(this.dir, "meta")}"\ndata_dir = "${join(this.dir, "data")}"\n\n[admin]\napi_bind_addr = "${adminAddr}"\n${tokenLine}`,
    );
    return path;
  }

  reset(): void {
    this.requests = [];
    this.override = undefined;
    this.routes = this.defaults();
  }

  stop(): void {
    this.server.stop(true);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The endpoints called, in order. */
  endpoints(): string[] {
    return this.requests.map((r) => r.endpoint);
  }

  /** The body of the one request to `endpoint`. */
  bodyOf(endpoint: string): unknown {
    const found = this.requests.filter((r) => r.endpoint === endpoint);
    if (found.length !== 1) throw new Error(`expected one ${endpoint} request, got ${found.length}`);
    return found[0]!.body;
  }

  cli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
    return runCapturing(args, env);
  }

  /** The CLI with `-c` pointing at this fake node. */
  run(...args: string[]): Promise<CliResult> {
    return this.cli(["-c", this.configPath, ...args]);
  }
}
