// One figure of `bun run bench:footprint`: what was measured, its value and the bound issue 13
// sets for it. Every section (startup.ts, memory.ts, cpu.ts) returns rows of this shape and the
// runner (../footprint.ts) prints them in one table and writes them to results/.

export interface FootprintRow {
  /** Which section measured it: "startup", "memory", "cpu". */
  section: string;
  /** What was measured, as a reader of the table would say it ("idle RSS, single node"). */
  figure: string;
  value: number;
  unit: string;
  /** The bound the figure must stay within (`value <= bound`), or undefined for a context figure. */
  bound?: number;
  /** How the figure was obtained, when the table needs it (run count, what the ceiling is). */
  note?: string;
}

/** A row's verdict: met, not met, or "-" for a context figure without a bound. */
export function verdict(row: FootprintRow): "met" | "NOT MET" | "-" {
  if (row.bound === undefined) return "-";
  return row.value <= row.bound ? "met" : "NOT MET";
}
