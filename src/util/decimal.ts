// The one parser for integers that arrive as text (query parameters, XML fields, headers):
// plain decimal digits only. `Number()` would also take "0x10", "1e3", " 7 " or "", which a
// client never means as a part number or a page size.

/** Longest digit string accepted: 2^53 has 16 digits, and no S3 integer comes near it. */
const MAX_DIGITS = 16;
const DIGITS = /^[0-9]+$/;

/**
 * The value of `text` when it is decimal digits and lies in [min, max]; undefined otherwise
 * (the caller knows which S3 error its parameter deserves).
 */
export function parseDecimal(text: string | null | undefined, min: number, max: number): number | undefined {
  if (text === null || text === undefined || text.length > MAX_DIGITS || !DIGITS.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) && n >= min && n <= max ? n : undefined;
}
