// `bun run bench:footprint`: the small-machine figures of issue 13, each printed beside its
// bound. Sections run one after the other on a quiet machine; choose some with
// FOOTPRINT_SECTIONS=startup,memory,cpu (all by default). Raw rows go to
// benchmarks/results/footprint-<time>.json.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { verdict, type FootprintRow } from "./footprint/row";

type Section = () => Promise<FootprintRow[]>;

const SECTIONS: Record<string, () => Promise<Section>> = {
  startup: async () => (await import("./footprint/startup")).run,
  memory: async () => (await import("./footprint/memory")).run,
  cpu: async () => (await import("./footprint/cpu")).run,
};

const chosen = (process.env.FOOTPRINT_SECTIONS ?? Object.keys(SECTIONS).join(",")).split(",").map((s) => s.trim()).filter(Boolean);
for (const name of chosen) {
  if (!(name in SECTIONS)) {
    console.error(`error: unknown section ${name} in FOOTPRINT_SECTIONS (use ${Object.keys(SECTIONS).join(", ")})`);
    process.exit(2);
  }
}

const started = new Date();
const rows: FootprintRow[] = [];
for (const name of chosen) {
  console.error(`== ${name}`);
  rows.push(...(await (await SECTIONS[name]!())()));
}

const fmt = (n: number) => (Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2));
console.log("| section | figure | value | bound | verdict | note |");
console.log("|---|---|---:|---:|---|---|");
for (const r of rows) {
  console.log(`| ${r.section} | ${r.figure} | ${fmt(r.value)} ${r.unit} | ${r.bound === undefined ? "" : `≤ ${fmt(r.bound)} ${r.unit}`} | ${verdict(r)} | ${r.note ?? ""} |`);
}
const dir = join(import.meta.dir, "results");
mkdirSync(dir, { recursive: true });
const file = join(dir, `footprint-${started.toISOString().replace(/[:.]/g, "-")}.json`);
writeFileSync(file, JSON.stringify({ started: started.toISOString(), rows }, null, 2) + "\n");
console.error(`rows written to ${file}`);
process.exit(rows.some((r) => verdict(r) === "NOT MET") ? 1 : 0);
