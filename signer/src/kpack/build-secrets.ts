/**
 * Registry credentials from the Secrets kpack mounts at `/var/build-secrets/<name>`, in its three
 * formats, read as kpack's `pkg/dockercreds` reads them: `-basic-docker=<secret>=<registry>` names a
 * `kubernetes.io/basic-auth` Secret (`username` and `password` files, both required); each
 * `-dockercfg` and `-dockerconfig` Secret directory may hold `.dockercfg` (a bare map of registry →
 * auth) and `.dockerconfigjson` (`{"auths": …}`). The first source naming a registry wins.
 * The same credentials serve the registry and the notary server's token service, as in kpack.
 */
import {
  TrustError,
  dockerConfigCredentials,
  firstCredentials,
  type CredentialSource,
} from '@kpack-trust/common';
import type { CompletionArguments } from './arguments.js';

/** Reads a file's text, or undefined when it does not exist. */
export type ReadTextFile = (path: string) => Promise<string | undefined>;

function join(dir: string, ...names: string[]): string {
  return [dir.replace(/\/+$/, ''), ...names].join('/');
}

function invalid(source: string, problem: string): TrustError {
  return new TrustError('CREDENTIALS_INVALID', { source, problem }, `${source}: ${problem}.`);
}

/** A Secret name as a single path segment: kpack's names are Kubernetes object names. */
function secretDir(dir: string, secret: string): string {
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(secret) || secret.length > 253) {
    throw invalid(`build secret "${secret}"`, 'is not a Kubernetes Secret name');
  }
  return join(dir, secret);
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // No excerpt: the file holds passwords.
    throw invalid(file, 'the file is not JSON');
  }
}

/** The credentials of every registry Secret kpack named in `args`, mounted under `dir`. */
export async function buildSecretCredentials(
  args: CompletionArguments,
  dir: string,
  readTextFile: ReadTextFile,
): Promise<CredentialSource> {
  const sources: CredentialSource[] = [];
  for (const { secret, registry } of args.basicDocker) {
    const base = secretDir(dir, secret);
    const read = async (name: 'username' | 'password'): Promise<string> => {
      const text = await readTextFile(join(base, name));
      if (text === undefined) {
        throw invalid(
          `basic-auth Secret "${secret}" (${base})`,
          `has no ${name} file; a kubernetes.io/basic-auth Secret needs username and password`,
        );
      }
      return text;
    };
    const username = await read('username');
    const password = await read('password');
    sources.push(dockerConfigCredentials({ auths: { [registry]: { username, password } } }, base));
  }
  // kpack: the -dockercfg Secrets, then the -dockerconfig ones; each directory's .dockercfg first.
  for (const secret of [...args.dockerCfgSecrets, ...args.dockerConfigSecrets]) {
    const base = secretDir(dir, secret);
    const cfgFile = join(base, '.dockercfg');
    const cfg = await readTextFile(cfgFile);
    if (cfg !== undefined) {
      sources.push(dockerConfigCredentials({ auths: parseJson(cfg, cfgFile) }, cfgFile));
    }
    const jsonFile = join(base, '.dockerconfigjson');
    const json = await readTextFile(jsonFile);
    if (json !== undefined)
      sources.push(dockerConfigCredentials(parseJson(json, jsonFile), jsonFile));
  }
  return firstCredentials(sources);
}
