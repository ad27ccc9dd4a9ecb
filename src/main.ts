#!/usr/bin/env bun
// Entry point of the `bunker` binary: everything lives in src/cli. `bunker server` never
// returns here; every other command resolves to its exit code.
import { runCli } from "./cli/index";

process.exit(await runCli(process.argv.slice(2)));
