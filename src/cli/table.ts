// Plain-text layout for the CLI's human output: aligned tables, labelled field blocks,
// section headings and byte sizes. Widths are display widths, so CJK names line up.

export { formatBytes } from "../util/format";

/** Space between table columns. */
const COLUMN_GAP = "  ";

function pad(cell: string, width: number): string {
  return cell + " ".repeat(Math.max(0, width - Bun.stringWidth(cell)));
}

/** Rows with each column padded to its widest cell; the last column is not padded. */
export function formatColumns(rows: readonly (readonly string[])[], indent = ""): string {
  const columns = Math.max(0, ...rows.map((row) => row.length));
  const widths = Array.from({ length: columns }, (_, col) =>
    Math.max(...rows.map((row) => Bun.stringWidth(row[col] ?? ""))),
  );
  return rows
    .map((row) =>
      widths.map((width, col) => (col === columns - 1 ? (row[col] ?? "") : pad(row[col] ?? "", width))).join(COLUMN_GAP),
    )
    .map((line) => `${indent}${line}`.trimEnd())
    .join("\n");
}

export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  return formatColumns([header, ...rows]);
}

/** `Label:  value` lines with the values aligned. */
export function formatFields(fields: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...fields.map(([label]) => Bun.stringWidth(label) + 1));
  return fields.map(([label, value]) => `${pad(`${label}:`, width)}${COLUMN_GAP}${value}`.trimEnd()).join("\n");
}

export function heading(title: string): string {
  return `==== ${title} ====`;
}

