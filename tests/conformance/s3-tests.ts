// Runs Ceph's s3-tests (test_s3.py, test_headers.py) against a fresh single-node Bunker started
// from this repository, and prints how many tests pass per category (tests/conformance/categories.ts
// says which categories are in Garage's feature scope). Nothing is downloaded: the suite is a
// checkout given on the command line (it is not part of this repository), and its Python modules
// come from the machine (Debian packages: python3-munch python3-isodate python3-tz python3-lxml
// python3-pytest-timeout; boto3/botocore/pytest new enough for the suite, e.g. the pyenv python).
//
//   bun tests/conformance/s3-tests.ts <s3-tests checkout> [--out DIR] [-k EXPR] [--min-pass RATE]
//
// Without a checkout it prints "s3-tests: skipped: no checkout given" and exits 0, so it can sit in
// a test command that runs where the suite is absent. The suite gets two keys allowed to create
// buckets ("main" and "alt"; its RGW "tenant" user reuses alt), runs with the markers
// AWS-compatible servers use (categories.ts), and has its per-test bucket cleanup kept working by
// s3tests_cleanup_shim.py (see there). Writes to DIR (default: a temp dir): s3tests.conf,
// junit.xml, pytest.log, server.log, cleanup-shim.log, results.json (one entry per test) and
// summary.txt (the printed table). Exits 1 on a setup error, or when --min-pass is given and the
// in-scope pass rate is below it.
// Env: S3TESTS_PYTHON (default python3): the interpreter to run pytest with.
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { startServer, type TestServer } from "../helpers/server.ts";
import { CATEGORIES, MARKER_EXPRESSION, TEST_FILES, UNCATEGORIZED, categorize } from "./categories.ts";

/** A hung test is cut off after this long (pytest-timeout), so one cannot stall the run. */
const PER_TEST_TIMEOUT_S = 120;
/** The whole pytest run is killed after this long, whatever pytest-timeout does. */
const RUN_TIMEOUT_MS = 60 * 60 * 1000;
/** Debian's modules are appended after the interpreter's own, so a newer boto3 there wins. */
const DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages";
/** Modules the suite imports (its requirements.txt, less what the two files run here never use). */
const REQUIRED_MODULES = ["boto3", "botocore", "pytest", "munch", "isodate", "pytz", "lxml", "dateutil", "yaml", "requests"];
/**
 * Runs pytest with Debian's dist-packages appended to sys.path (after the interpreter's own).
 * Debian's awscrt (there for awscli) is hidden: botocore switches to its CRT signer when awscrt
 * imports, which the suite is not written for (it sends header values the CRT refuses).
 */
const PYTEST_BOOTSTRAP = `import sys; sys.modules["awscrt"] = None; sys.path.append(${JSON.stringify(DEBIAN_DIST_PACKAGES)}); import pytest; sys.exit(pytest.main())`;

type Outcome = "passed" | "failed" | "error" | "skipped";
interface TestResult {
  name: string;
  file: string;
  outcome: Outcome;
  /** First line of the failure, error or skip message. */
  message: string;
  category: string;
  inScope: boolean;
}

/** A setup problem: reported in one line, exit code 1 (after the server is stopped). */
class SetupError extends Error {}
function fail(message: string): never {
  throw new SetupError(message);
}

async function run(cmd: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  const p = Bun.spawn(cmd, { ...opts, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

/** Checks the interpreter has what the suite imports; returns whether pytest-timeout is there. */
async function checkPython(python: string): Promise<boolean> {
  const probe = `import sys, importlib.util as u; sys.path.append(${JSON.stringify(DEBIAN_DIST_PACKAGES)})
missing = [m for m in ${JSON.stringify(REQUIRED_MODULES)} if u.find_spec(m) is None]
print(" ".join(missing)); print(u.find_spec("pytest_timeout") is not None)`;
  const r = await run([python, "-c", probe]).catch((e: Error) => fail(`cannot run ${python}: ${e.message}`));
  if (r.code !== 0) fail(`${python} failed: ${r.stderr.trim().split("\n").pop()}`);
  const [missing = "", hasTimeout = ""] = r.stdout.split("\n");
  if (missing.trim()) {
    fail(
      `${python} lacks Python modules: ${missing.trim()} ` +
        "(apt-get install python3-munch python3-isodate python3-tz python3-lxml python3-pytest-timeout; boto3 comes with the pyenv python)",
    );
  }
  return hasTimeout.trim() === "True";
}

interface Key {
  name: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** Creates a key allowed to create buckets; s3-tests creates (and deletes) its own buckets. */
async function createKey(server: TestServer, name: string) {
  return server.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", {
    name,
    allow: { createBucket: true },
  });
}

/**
 * The suite's config. Bunker's Owner ID is the access key id and its DisplayName the key name.
 * The suite wants a third "tenant" user (an RGW notion) to clean up after each test: it is given
 * the alt key, so only two keys exist. The [iam*] sections must exist but are only used by
 * out-of-scope IAM/STS tests.
 */
function suiteConfig(server: TestServer, main: Key, alt: Key): string {
  const user = (k: Key) =>
    [`display_name = ${k.name}`, `user_id = ${k.accessKeyId}`, `email = ${k.name}@bunker.test`, `access_key = ${k.accessKeyId}`, `secret_key = ${k.secretAccessKey}`];
  const unusedIam = (id: string) => [`access_key = ${id}`, `secret_key = unused-${id}`, `user_id = ${id}`, `email = ${id}@bunker.test`, `display_name = ${id}`];
  return [
    "[DEFAULT]",
    "host = 127.0.0.1",
    `port = ${server.s3Port}`,
    "is_secure = False",
    "ssl_verify = False",
    "[fixtures]",
    "bucket prefix = s3t-{random}-",
    "[s3 main]",
    ...user(main),
    `api_name = ${server.region}`,
    "[s3 alt]",
    ...user(alt),
    "[s3 tenant]",
    ...user(alt),
    "tenant = none",
    "[iam]",
    ...unusedIam("IAMUNUSED"),
    "[iam root]",
    ...unusedIam("IAMROOTUNUSED"),
    "[iam alt root]",
    ...unusedIam("IAMALTROOTUNUSED"),
    "",
  ].join("\n");
}

function xmlUnescape(s: string): string {
  return s
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, d: string) => String.fromCodePoint(Number(d)))
    .replace(/&amp;/g, "&");
}

/** Reads pytest's junit XML: one result per <testcase>. A failure or error wins over a pass. */
export function parseJunit(xml: string): Omit<TestResult, "category" | "inScope">[] {
  const results: Omit<TestResult, "category" | "inScope">[] = [];
  const caseRe = /<testcase\b([^>]*?)(?:\/>|>([\s\S]*?)<\/testcase>)/g;
  for (const m of xml.matchAll(caseRe)) {
    const attrs = m[1] ?? "";
    const body = m[2] ?? "";
    const attr = (s: string, n: string) => {
      const v = new RegExp(`\\b${n}="([^"]*)"`).exec(s)?.[1];
      return v === undefined ? undefined : xmlUnescape(v);
    };
    const name = attr(attrs, "name") ?? "?";
    const file = (attr(attrs, "classname") ?? "").split(".").pop() ?? "";
    let outcome: Outcome = "passed";
    let message = "";
    for (const kind of ["failure", "error", "skipped"] as const) {
      const el = new RegExp(`<${kind}\\b([^>]*)`).exec(body);
      if (!el) continue;
      outcome = kind === "failure" ? "failed" : kind;
      message = (attr(el[1] ?? "", "message") ?? "").split("\n")[0]!.slice(0, 300);
      break;
    }
    results.push({ name, file, outcome, message });
  }
  return results;
}

const UPLOADS_BLOCK_DELETE =
  "cleanup: DeleteBucket answered BucketNotEmpty for a bucket holding only in-progress multipart uploads (AWS deletes it)";

/** What s3tests_cleanup_shim.py stepped in for: "<kind>\t<test>\t<bucket>" lines. */
function readShimLog(text: string): { versions: number; uploads: Set<string> } {
  let versions = 0;
  const uploads = new Set<string>();
  for (const line of text.split("\n").filter(Boolean)) {
    const [kind, test = ""] = line.split("\t");
    if (kind === "versions") versions++;
    else if (kind === "uploads") uploads.add(test);
  }
  return { versions, uploads };
}

function summarize(results: TestResult[]): { text: string; inScopeRate: number } {
  const rows: string[] = [];
  const pad = (s: string, n: number) => s.padEnd(n);
  rows.push(`${pad("category", 18)} ${pad("scope", 5)} ${pad("passed/run", 11)} failed  skipped`);
  let inPassed = 0;
  let inRun = 0;
  let outPassed = 0;
  let outRun = 0;
  const ordered = [...CATEGORIES, UNCATEGORIZED].sort((a, b) => Number(b.inScope) - Number(a.inScope));
  for (const cat of ordered) {
    const mine = results.filter((r) => r.category === cat.name);
    if (mine.length === 0) continue;
    const passed = mine.filter((r) => r.outcome === "passed").length;
    const skipped = mine.filter((r) => r.outcome === "skipped").length;
    const ran = mine.length - skipped;
    if (cat.inScope) {
      inPassed += passed;
      inRun += ran;
    } else {
      outPassed += passed;
      outRun += ran;
    }
    rows.push(`${pad(cat.name, 18)} ${pad(cat.inScope ? "in" : "out", 5)} ${pad(`${passed}/${ran}`, 11)} ${pad(String(ran - passed), 7)} ${skipped}`);
  }
  const inScopeRate = inRun === 0 ? 0 : inPassed / inRun;
  rows.push("");
  rows.push(`in scope:     ${inPassed}/${inRun} passed (${(inScopeRate * 100).toFixed(1)}%)`);
  rows.push(`out of scope: ${outPassed}/${outRun} passed`);
  // The plain closing line test-output readers understand.
  rows.push(`s3-tests in scope: ${inPassed} passed, ${inRun - inPassed} failed`);
  return { text: rows.join("\n"), inScopeRate };
}

async function main() {
  const { values, positionals } = parseArgs({
    args: Bun.argv.slice(2),
    options: { out: { type: "string" }, k: { type: "string", short: "k" }, "min-pass": { type: "string" } },
    allowPositionals: true,
  });
  const checkout = positionals[0];
  if (!checkout) {
    console.log("s3-tests: skipped: no checkout given");
    return;
  }
  const suite = resolve(checkout);
  if (!existsSync(join(suite, TEST_FILES[0]!))) fail(`${suite} is not an s3-tests checkout (no ${TEST_FILES[0]})`);
  const minPass = values["min-pass"] === undefined ? undefined : Number(values["min-pass"]);
  if (minPass !== undefined && !(minPass >= 0 && minPass <= 1)) fail("--min-pass takes a rate between 0 and 1, e.g. 0.95");
  const python = process.env.S3TESTS_PYTHON ?? "python3";
  const hasTimeout = await checkPython(python);
  const out = values.out ? resolve(values.out) : mkdtempSync(join(tmpdir(), "bunker-s3-tests-"));
  mkdirSync(out, { recursive: true });

  // The suite is written against AWS's default region, whose rules differ from the others'
  // (re-creating a bucket you own answers 200 there, BucketAlreadyOwnedByYou elsewhere):
  // the node serves that region, as Bunker can be configured to.
  const server = await startServer({ region: "us-east-1" });
  let results: TestResult[];
  try {
    const main = { name: "s3-tests-main", ...(await createKey(server, "s3-tests-main")) };
    const alt = { name: "s3-tests-alt", ...(await createKey(server, "s3-tests-alt")) };
    const confPath = join(out, "s3tests.conf");
    writeFileSync(confPath, suiteConfig(server, main, alt));
    const junitPath = join(out, "junit.xml");
    const shimLog = join(out, "cleanup-shim.log");
    writeFileSync(shimLog, "");
    const logPath = join(out, "pytest.log");
    writeFileSync(logPath, ""); // Bun.file as stdout does not truncate
    const args = [
      python, "-c", PYTEST_BOOTSTRAP,
      ...TEST_FILES,
      "-m", MARKER_EXPRESSION,
      ...(values.k ? ["-k", values.k] : []),
      `--junitxml=${junitPath}`,
      "-o", "junit_family=xunit2",
      "-p", "no:cacheprovider", // leave the checkout as it was
      "-p", "s3tests_cleanup_shim", // keeps the suite's per-test cleanup working: see that file
      "-q", "-rN",
      ...(hasTimeout ? [`--timeout=${PER_TEST_TIMEOUT_S}`] : []),
    ];
    console.log(`s3-tests: running ${TEST_FILES.join(" ")} from ${suite} against ${server.endpoint} (output in ${out})`);
    if (!hasTimeout) console.log("s3-tests: pytest-timeout absent; only the whole run is bounded");
    const p = Bun.spawn(args, {
      cwd: suite,
      // The server signs with its own region; the suite's clients take it from the environment.
      env: {
        ...process.env,
        S3TEST_CONF: confPath,
        AWS_DEFAULT_REGION: server.region,
        PYTHONDONTWRITEBYTECODE: "1",
        PYTHONPATH: [import.meta.dir, process.env.PYTHONPATH].filter(Boolean).join(":"),
        S3TESTS_SHIM_LOG: shimLog,
      },
      stdout: Bun.file(logPath),
      stderr: "inherit",
    });
    const timer = setTimeout(() => p.kill("SIGKILL"), RUN_TIMEOUT_MS);
    const code = await p.exited;
    clearTimeout(timer);
    // pytest: 0 all passed, 1 some failed; anything else means the run itself went wrong.
    if (code !== 0 && code !== 1) fail(`pytest exited ${code}; see ${logPath}`);
    const shim = readShimLog(await Bun.file(shimLog).text());
    results = parseJunit(await Bun.file(junitPath).text()).map((r) => {
      const c = categorize(r.name);
      // Its cleanup only got through because the shim aborted the uploads it left.
      const cleanup = shim.uploads.has(r.name) && r.outcome === "passed";
      return {
        ...r,
        ...(cleanup ? { outcome: "error" as const, message: UPLOADS_BLOCK_DELETE } : {}),
        category: c.name,
        inScope: c.inScope,
      };
    });
    if (shim.versions > 0) {
      console.log(`s3-tests: cleanup shim: ListObjectVersions answered 501; ${shim.versions} buckets were listed with ListObjectsV2 instead`);
    }
    if (shim.uploads.size > 0) {
      console.log(`s3-tests: cleanup shim: ${shim.uploads.size} tests left multipart uploads that made DeleteBucket answer BucketNotEmpty; counted as errors`);
    }
  } finally {
    writeFileSync(join(out, "server.log"), server.logs());
    await server.stop();
  }
  writeFileSync(join(out, "results.json"), JSON.stringify(results, null, 1));
  const { text, inScopeRate } = summarize(results);
  writeFileSync(join(out, "summary.txt"), text + "\n");
  console.log(text);
  if (minPass !== undefined && inScopeRate < minPass) fail(`in-scope pass rate ${(inScopeRate * 100).toFixed(1)}% is below ${minPass * 100}%`);
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    if (!(e instanceof SetupError)) throw e;
    console.error(`s3-tests: ${e.message}`);
    process.exit(1);
  }
}
