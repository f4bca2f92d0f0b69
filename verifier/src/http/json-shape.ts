/**
 * Checking the shape of a decoded request body (ImageReview, AdmissionReview) and naming what was
 * found instead, in messages that quote attacker text only briefly.
 */

/** An object as decoded from JSON. */
export type JsonRecord = Readonly<Record<string, unknown>>;

/** True for a JSON object (not null, not an array). */
export function isRecord(value: unknown): value is JsonRecord {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A value named for a message, never quoting more than 60 characters of attacker text. */
export function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') {
    const shown = value.length > 60 ? `${value.slice(0, 60)}…` : value;
    return `the string ${JSON.stringify(shown)}`;
  }
  return `a ${typeof value}`;
}
