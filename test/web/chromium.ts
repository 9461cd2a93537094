/**
 * Debian's chromium for the admin web page test (issue 13), driven by playwright-core (which brings
 * no browser of its own). Without /usr/bin/chromium the suite skips loudly, and under CI=true it
 * fails (.ci/run installs it), like the etcd suites (test/helpers/etcd.ts).
 */
import { existsSync } from 'node:fs';
import { describe, it } from 'vitest';

export const CHROMIUM = process.env.MUSTER_TEST_CHROMIUM ?? '/usr/bin/chromium';

/** The decision the browser suite makes: run, skip loudly, or (CI=true) fail. Call at the top level. */
export function chromiumSuite(suite: string): { skip: boolean } {
  if (existsSync(CHROMIUM)) return { skip: false };
  const ci = process.env.CI === 'true';
  console.warn(
    `\n*** ${suite}: ${ci ? 'FAILING' : 'SKIPPING'} the browser tests: no ${CHROMIUM} ` +
      `(Debian: apt-get install chromium). ***\n`,
  );
  describe.skipIf(!ci)('chromium prerequisites (CI)', () => {
    it('chromium is installed in CI', () => {
      throw new Error(`CI=true but ${CHROMIUM} is not installed (.ci/run installs chromium)`);
    });
  });
  return { skip: true };
}

/**
 * Flags for a hermetic headless run: no sandbox as root (CI runs as root), no background traffic
 * (updates, sync, metrics), and every host name but the page's own resolving to nothing.
 */
export const CHROMIUM_ARGS = [
  ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--no-first-run',
  '--metrics-recording-only',
  '--disable-dev-shm-usage',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost',
];
