// Minimal leveled logger writing one line per event to stderr.
type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };
const threshold = ORDER[(process.env.BUNKER_LOG as Level) ?? "info"] ?? ORDER.info;

function emit(level: Level, scope: string, msg: string): void {
  if (ORDER[level] < threshold) return;
  process.stderr.write(`${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${scope}: ${msg}\n`);
}

export function logger(scope: string) {
  return {
    debug: (msg: string) => emit("debug", scope, msg),
    info: (msg: string) => emit("info", scope, msg),
    warn: (msg: string) => emit("warn", scope, msg),
    error: (msg: string) => emit("error", scope, msg),
  };
}
export type Logger = ReturnType<typeof logger>;
