/**
 * kpack's own Go module at the release the tests pin, fetched through the Go module proxy into
 * the module cache, so that the apiserver serves kpack's real CRDs (its config/*.yaml) rather than
 * a copy kept here.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

/** kpack's release whose CRDs the apiserver serves (the one test/kube/kpack/go.mod pins). */
const KPACK_MODULE = 'github.com/pivotal/kpack@v0.17.2';

/** The directory of kpack's Go module in the module cache (downloaded through the Go proxy). */
export async function kpackModuleDir(): Promise<string> {
  const go = process.env['GO'] ?? '/usr/local/go/bin/go';
  const { stdout } = await promisify(execFile)(go, ['mod', 'download', '-json', KPACK_MODULE], {
    timeout: 300_000,
  });
  const dir = (JSON.parse(stdout) as { Dir?: string }).Dir;
  if (dir === undefined) throw new Error(`go mod download ${KPACK_MODULE} gave no Dir`);
  return dir;
}
