/**
 * The one rule for a notary server URL, shared by every entry point that is given one
 * (`sign --notary-url`, kpack's `-notary-v1-url` in `kpack-completion`, and the controller's
 * `kpack-trust.io/notary-url`), so that none of them accepts a URL another refuses.
 *
 * Trust data and the token exchange (which carries registry credentials) go over TLS only: trust
 * data read over http can be swapped in transit, and Go's notary client would send the build's
 * registry login to a plain-http token service. There is no insecure switch anywhere. The rule
 * is a pure function; each entry point words the refusal for its own flag or annotation, and
 * none echoes the URL (a mistyped one may hold a password or a token).
 */

/** Why a notary URL is refused. */
export type NotaryUrlProblem =
  /** Not parsable as an absolute URL, or a scheme other than http/https (`notary.example:4443` parses with the scheme "notary.example:"). */
  | 'not-a-url'
  /** `http://`: no TLS. */
  | 'not-https'
  /** `https://user:password@…`: credentials belong in a Docker config, never in a URL that is logged and annotated. */
  | 'credentials'
  /** A query or fragment: the notary client appends paths, so either would end up in the wrong place. */
  | 'query-or-fragment';

/** The problem with `text` as a notary server URL, or undefined when it is usable. */
export function notaryUrlProblem(text: string): NotaryUrlProblem | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'not-a-url';
  }
  // Credentials first: an http URL holding a password is refused for the password, the worse fault.
  if (url.username !== '' || url.password !== '') return 'credentials';
  if (url.protocol === 'http:') return 'not-https';
  if (url.protocol !== 'https:') return 'not-a-url';
  if (url.search !== '' || url.hash !== '') return 'query-or-fragment';
  // `https://` alone parses with an empty host in no runtime, but do not depend on it.
  if (url.hostname === '') return 'not-a-url';
  return undefined;
}
