/**
 * A throwaway etcd cluster for tests (DESIGN "Store backends": the registry on etcd): `members`
 * etcd processes on free loopback ports, data in a temp dir, killed and removed by stop(). Never the
 * default ports 2379/2380: a CI machine where the Debian package started a system etcd is not
 * touched. Without an `etcd` binary the suites skip loudly, and under CI=true they fail.
 */
import { describe, it } from 'vitest';
import { which } from './which.js';

// One implementation of the cluster, shared with the `scale` bench.
export { startEtcdCluster, type EtcdCluster } from '../../src/bench/etcd.js';

/** The decision every etcd suite makes: run, skip loudly, or (CI=true) fail. Call at the top level. */
export function etcdSuite(suite: string): { skip: boolean } {
  if (which('etcd')) return { skip: false };
  const ci = process.env.CI === 'true';
  console.warn(
    `\n*** ${suite}: ${ci ? 'FAILING' : 'SKIPPING'} the etcd tests: no etcd on PATH ` +
      `(Debian: apt-get install etcd-server). ***\n`,
  );
  describe.skipIf(!ci)('etcd prerequisites (CI)', () => {
    it('etcd is installed in CI', () => {
      throw new Error('CI=true but etcd is not installed (.ci/run installs etcd-server)');
    });
  });
  return { skip: true };
}
