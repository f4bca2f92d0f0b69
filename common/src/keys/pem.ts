/**
 * PEM blocks with RFC 1421 headers, read and written the way Go's encoding/pem does: notary keeps
 * `role:` and `gun:` in the headers of its key files, and OpenSSL (hence Node) refuses any header
 * other than Proc-Type/DEK-Info, so these files must be unwrapped here before Node sees them.
 */

/** One PEM block. */
export interface PemBlock {
  readonly type: string;
  readonly headers: ReadonlyMap<string, string>;
  readonly bytes: Buffer;
}

/** Blocks of a PEM text plus whatever non-blank text lay outside them (for strict callers). */
export interface PemDocument {
  readonly blocks: PemBlock[];
  readonly outside: string;
}

/** Thrown by the reader; callers turn it into the TrustError that fits their context. */
export class PemError extends Error {
  override readonly name = 'PemError';
}

const BEGIN = /^-----BEGIN ([^-]+(?:-[^-]+)*)-----[ \t]*$/;
const END = /^-----END ([^-]+(?:-[^-]+)*)-----[ \t]*$/;

/**
 * Base64 as Go's StdEncoding decodes it: standard alphabet, padding required, CR/LF ignored.
 * Returns undefined for anything else (Node's own decoder silently skips invalid characters).
 */
export function decodeBase64(text: string): Buffer | undefined {
  const compact = text.replace(/[\r\n]/g, '');
  if (compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) return undefined;
  return Buffer.from(compact, 'base64');
}

/** Splits a PEM text into its blocks. Throws PemError for an unterminated or undecodable block. */
export function decodePem(text: string): PemDocument {
  const lines = text.split(/\r?\n/);
  const blocks: PemBlock[] = [];
  const outside: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i] ?? '';
    const begin = BEGIN.exec(line);
    i++;
    if (!begin) {
      if (line.trim() !== '') outside.push(line);
      continue;
    }
    const type = begin[1] ?? '';
    const headers = new Map<string, string>();
    // Headers are the `Key: Value` lines right after BEGIN (Go stops at the first line without ':').
    while (i < lines.length) {
      const header = lines[i] ?? '';
      const colon = header.indexOf(':');
      if (colon === -1 || END.test(header)) break;
      headers.set(header.slice(0, colon).trim(), header.slice(colon + 1).trim());
      i++;
    }
    const body: string[] = [];
    let ended = false;
    while (i < lines.length) {
      const bodyLine = lines[i] ?? '';
      i++;
      const end = END.exec(bodyLine);
      if (end) {
        if (end[1] !== type) throw new PemError(`PEM block "${type}" ends with "${end[1] ?? ''}"`);
        ended = true;
        break;
      }
      body.push(bodyLine.trim());
    }
    if (!ended) throw new PemError(`PEM block "${type}" has no END line`);
    const bytes = decodeBase64(body.join(''));
    if (!bytes || bytes.length === 0) throw new PemError(`PEM block "${type}" is not valid base64`);
    blocks.push({ type, headers, bytes });
  }
  return { blocks, outside: outside.join('\n') };
}

/** Writes one block as Go's pem.Encode does: Proc-Type first, other headers sorted, 64-column body. */
export function encodePem(
  type: string,
  bytes: Uint8Array,
  headers?: ReadonlyMap<string, string>,
): string {
  const out = [`-----BEGIN ${type}-----\n`];
  if (headers && headers.size > 0) {
    const keys = [...headers.keys()].sort((a, b) =>
      a === 'Proc-Type' ? -1 : b === 'Proc-Type' ? 1 : a < b ? -1 : a > b ? 1 : 0,
    );
    for (const key of keys) out.push(`${key}: ${headers.get(key) ?? ''}\n`);
    out.push('\n');
  }
  const base64 = Buffer.from(bytes).toString('base64');
  for (let at = 0; at < base64.length; at += 64) out.push(base64.slice(at, at + 64), '\n');
  out.push(`-----END ${type}-----\n`);
  return out.join('');
}
