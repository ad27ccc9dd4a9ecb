// The `bunker` command line: global options, dispatch to `server` or to an admin-API
// command, help, and the exit-code contract — 0 success, 1 failure (config, connection,
// API error), 2 usage error. Every error is one `error: ...` line on stderr.

import { loadConfig, readCredentials } from "../config";
import { AdminApiError, AdminClient, adminUrlFromConfig } from "./admin-client";
import { UnknownFlagError, UsageError, flagSynopsis, parseArgs, type FlagSpec } from "./args";
import type { CliContext, Command, CommandGroup } from "./command";
import { blockCommands } from "./commands/block";
import { repairCommands, workerCommands } from "./commands/worker";
import { bucketCommands } from "./commands/bucket";
import { keyCommands } from "./commands/key";
import { layoutCommands } from "./commands/layout";
import { nodeCommands } from "./commands/node";
import { statusCommand } from "./commands/status";
import { formatColumns } from "./table";
import { releaseStartupPages, RELEASE_STARTUP_PAGES_DELAY_MS } from "./startup-pages";
import { VERSION_LINE } from "../util/version";

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export interface CliIo {
  stdout(text: string): Promise<void>;
  stderr(text: string): Promise<void>;
  env: Record<string, string | undefined>;
}

function isBrokenPipe(err: unknown): boolean {
  return (err as { code?: string })?.code === "EPIPE";
}

/** Bun.write resolves once the text is out, so main's process.exit cannot cut a piped
 * listing short; a reader that went away (`| head`) is not an error. */
async function writeTo(sink: typeof Bun.stdout, text: string): Promise<void> {
  try {
    await Bun.write(sink, text);
  } catch (err) {
    if (!isBrokenPipe(err)) throw err;
  }
}

const processIo: CliIo = {
  stdout: (text) => writeTo(Bun.stdout, text),
  stderr: (text) => writeTo(Bun.stderr, text),
  env: process.env,
};

const CONFIG_FLAG: FlagSpec = {
  name: "config",
  short: "c",
  value: "FILE",
  help: "configuration file (default: $BUNKER_CONFIG, else the embedded defaults)",
};
const HELP_FLAG: FlagSpec = { name: "help", short: "h", help: "show this help" };
const JSON_FLAG: FlagSpec = { name: "json", help: "print the raw JSON result" };
const VERSION_FLAG: FlagSpec = { name: "version", short: "V", help: "print the version and build" };

const GLOBAL_FLAGS = [CONFIG_FLAG, HELP_FLAG, JSON_FLAG, VERSION_FLAG];
/** Accepted by every command after its name. */
const COMMAND_FLAGS = [JSON_FLAG, HELP_FLAG];
/** Only meaningful before the command; named in the error when given after it. */
const GLOBAL_ONLY_FLAGS = new Set(["-c", "--config"]);

const HELP_INDENT = "  ";

const GROUPS: CommandGroup[] = [nodeCommands, layoutCommands, keyCommands, bucketCommands, blockCommands, workerCommands, repairCommands];

function synopsis(fullName: string, cmd: Command): string {
  const args = cmd.variadic ? [...cmd.args.slice(0, -1), `${cmd.args[cmd.args.length - 1]}...`] : cmd.args;
  return ["bunker", fullName, ...args, "[options]"].join(" ");
}

function optionsHelp(flags: readonly FlagSpec[]): string {
  return formatColumns(
    flags.map((f) => [flagSynopsis(f), f.help]),
    HELP_INDENT,
  );
}

function topHelp(): string {
  const rows = [
    ["server", "run a node"],
    [statusCommand.name, statusCommand.summary],
    ["version", "print the version and build of this bunker"],
    ...GROUPS.map((g) => [g.name, `${g.summary} (${g.commands.map((c) => c.name).join(", ")})`]),
    ["help [COMMAND]", "show help for a command"],
  ];
  return [
    "bunker: S3-compatible object store, Garage-compatible command line",
    "",
    "Usage: bunker [-c FILE] <command> [options]",
    "",
    "Commands:",
    formatColumns(rows, HELP_INDENT),
    "",
    "Global options:",
    optionsHelp(GLOBAL_FLAGS),
    "",
    "Commands other than `server` talk to the node's admin API (admin.api_bind_addr). The admin",
    "token comes from admin.admin_token, $BUNKER_ADMIN_TOKEN, or the credentials file written on",
    "the first start without a config.",
  ].join("\n");
}

function groupHelp(group: CommandGroup): string {
  return [
    `Usage: bunker ${group.name} <command> [options]`,
    "",
    `${group.summary[0]!.toUpperCase()}${group.summary.slice(1)}.`,
    "",
    "Commands:",
    formatColumns(
      group.commands.map((c) => [synopsis(`${group.name} ${c.name}`, c), c.summary]),
      HELP_INDENT,
    ),
    "",
    `Run 'bunker ${group.name} <command> --help' for its options.`,
  ].join("\n");
}

function commandHelp(fullName: string, cmd: Command): string {
  return [
    `Usage: ${synopsis(fullName, cmd)}`,
    "",
    `${cmd.summary[0]!.toUpperCase()}${cmd.summary.slice(1)}.`,
    "",
    "Options:",
    optionsHelp([...cmd.flags, ...COMMAND_FLAGS]),
  ].join("\n");
}

const VERSION_HELP = [
  "Usage: bunker version",
  "",
  "Print the version of this bunker and its build (the git commit of a built binary, dev from source).",
  "The version of a running node is in GetNodeInfo and GetClusterStatus (garageVersion).",
].join("\n");

const SERVER_HELP = [
  "Usage: bunker [-c FILE] server",
  "",
  "Run a node. Without a config file it starts a single node with embedded defaults.",
].join("\n");

function makeContext(configPath: string | undefined, io: CliIo): CliContext {
  let client: AdminClient | undefined;
  return {
    client() {
      if (client === undefined) {
        const config = loadConfig(configPath, (msg) => void io.stderr(`warning: ${msg}\n`));
        const token = config.admin.admin_token ?? io.env.BUNKER_ADMIN_TOKEN ?? readCredentials(config)?.adminToken;
        client = new AdminClient(adminUrlFromConfig(config), token);
      }
      return client;
    },
  };
}

interface Dispatch {
  io: CliIo;
  configPath: string | undefined;
  json: boolean;
}

async function runCommand(fullName: string, cmd: Command, argv: string[], d: Dispatch): Promise<number> {
  const helpHint = `(see 'bunker ${fullName} --help')`;
  let parsed;
  try {
    parsed = parseArgs(argv, [...cmd.flags, ...COMMAND_FLAGS]);
  } catch (err) {
    if (err instanceof UnknownFlagError && GLOBAL_ONLY_FLAGS.has(err.flag)) {
      throw new UsageError(`${err.flag} is a global option: put it before the command (bunker -c FILE ${fullName})`);
    }
    if (err instanceof UsageError) throw new UsageError(`${err.message} ${helpHint}`);
    throw err;
  }
  if (parsed.flags.help === true) {
    await d.io.stdout(`${commandHelp(fullName, cmd)}\n`);
    return EXIT_OK;
  }
  if (parsed.positional.length < cmd.args.length) {
    throw new UsageError(`missing ${cmd.args[parsed.positional.length]} ${helpHint}`);
  }
  if (parsed.positional.length > cmd.args.length && !cmd.variadic) {
    throw new UsageError(`unexpected argument '${parsed.positional[cmd.args.length]}' ${helpHint}`);
  }

  const result = await cmd.run(makeContext(d.configPath, d.io), { positional: parsed.positional, flags: parsed.flags });
  const json = d.json || parsed.flags.json === true;
  await d.io.stdout(json ? `${JSON.stringify(result.json, null, 2)}\n` : `${result.text}\n`);
  if (!json && result.hint !== undefined) await d.io.stderr(`${result.hint}\n`);
  return EXIT_OK;
}

async function runServer(argv: string[], d: Dispatch): Promise<number> {
  const parsed = parseArgs(argv, [HELP_FLAG]);
  if (parsed.flags.help === true) {
    await d.io.stdout(`${SERVER_HELP}\n`);
    return EXIT_OK;
  }
  if (parsed.positional.length > 0) throw new UsageError(`unexpected argument '${parsed.positional[0]}'`);
  const server = await import("../server");
  await server.runServer(d.configPath);
  // The compiled binary starts with JIT tier-up held back (deploy/build.ts, START_JIT_POLICY):
  // start-up code runs once and rarely repays compiling. Serving code does: normal policy now.
  Bun.unsafe.setJITPolicy(1);
  // Start-up's code stays mapped, but the node no longer runs most of it (src/cli/startup-pages.ts).
  setTimeout(() => void releaseStartupPages().catch(() => {}), RELEASE_STARTUP_PAGES_DELAY_MS).unref();
  // The node now lives on its sockets; handing an exit code back would let main kill it.
  return new Promise<number>(() => {});
}

/** `bunker help [group] [command]` and `--help` without a command. */
async function printHelp(words: string[], io: CliIo): Promise<number> {
  const [first, second] = words;
  const group = GROUPS.find((g) => g.name === first);
  let text: string;
  if (first === undefined) text = topHelp();
  else if (first === "server") text = SERVER_HELP;
  else if (first === "version") text = VERSION_HELP;
  else if (first === statusCommand.name) text = commandHelp(first, statusCommand);
  else if (group && second === undefined) text = groupHelp(group);
  else {
    const cmd = group?.commands.find((c) => c.name === second);
    if (!cmd) throw new UsageError(`no help for unknown command '${words.join(" ")}' (see 'bunker --help')`);
    text = commandHelp(`${group!.name} ${cmd.name}`, cmd);
  }
  await io.stdout(`${text}\n`);
  return EXIT_OK;
}

/** `bunker version` and `bunker --version`: what this binary is, without reading any config. */
async function printVersion(argv: string[], io: CliIo): Promise<number> {
  const parsed = parseArgs(argv, [HELP_FLAG]);
  if (parsed.flags.help === true) {
    await io.stdout(`${VERSION_HELP}\n`);
    return EXIT_OK;
  }
  if (parsed.positional.length > 0) throw new UsageError(`unexpected argument '${parsed.positional[0]}' (see 'bunker version --help')`);
  await io.stdout(`${VERSION_LINE}\n`);
  return EXIT_OK;
}

async function dispatch(argv: string[], io: CliIo): Promise<number> {
  let global;
  try {
    global = parseArgs(argv, GLOBAL_FLAGS, { stopAtPositional: true });
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(`${err.message} (see 'bunker --help')`);
    throw err;
  }
  const word = global.positional[0];
  if (word === undefined && global.flags.version === true) return printVersion([], io);
  if (word === "help") return printHelp(global.rest, io);
  if (global.flags.help === true) return printHelp(word === undefined ? [] : [word, ...global.rest], io);
  if (word === undefined) throw new UsageError("missing command (see 'bunker --help')");

  const configFlag = global.flags.config;
  const d: Dispatch = {
    io,
    configPath: typeof configFlag === "string" ? configFlag : io.env.BUNKER_CONFIG || undefined,
    json: global.flags.json === true,
  };
  if (word === "server") return runServer(global.rest, d);
  if (word === "version") return printVersion(global.rest, io);
  if (word === statusCommand.name) return runCommand(word, statusCommand, global.rest, d);

  const group = GROUPS.find((g) => g.name === word);
  if (!group) throw new UsageError(`unknown command '${word}' (see 'bunker --help')`);
  const sub = parseArgs(global.rest, COMMAND_FLAGS, { stopAtPositional: true });
  const name = sub.positional[0];
  if (name === undefined) {
    if (sub.flags.help === true) return printHelp([group.name], io);
    throw new UsageError(`missing command: bunker ${group.name} <${group.commands.map((c) => c.name).join("|")}>`);
  }
  const cmd = group.commands.find((c) => c.name === name);
  if (!cmd) throw new UsageError(`unknown command '${group.name} ${name}' (see 'bunker ${group.name} --help')`);
  if (sub.flags.help === true) return printHelp([group.name, name], io);
  return runCommand(`${group.name} ${name}`, cmd, sub.rest, { ...d, json: d.json || sub.flags.json === true });
}

function errorLine(err: unknown): string {
  if (err instanceof AdminApiError) return `${err.message} (${err.code})`;
  const message = err instanceof Error ? err.message : String(err);
  return message.split("\n")[0]!;
}

/** Runs the CLI and returns the process exit code. */
export async function runCli(argv: string[], io: CliIo = processIo): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (err) {
    await io.stderr(`error: ${errorLine(err)}\n`);
    return err instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
  }
}
