/**
 * One host's share of the mDNS advert bench (mdns.ts): runs inside a test-LAN namespace, opens ONE
 * mDNS stack with the product's advertiser (createMdns, the same code `muster join` advertises with)
 * and, on "go", publishes `_muster-join._tcp` "ready to register as X" for each of its names, each at
 * its own instant within the spread (so the whole LAN's adverts start within one second). Each name
 * probes and announces as a real node's would (RFC 6762 §8).
 *
 * argv[2]: JSON { interface, names, cluster, spreadMs }. stdout: one JSON line per step
 * ({ready}, {published, at}), stdin: "go\n". SIGTERM or stdin's end: goodbyes, then exit.
 */
import { createHash } from 'node:crypto';
import { createMdns, nodeTxt, type Publication } from '../advertiser/index.js';

interface Config {
  interface: string;
  names: string[];
  cluster: string;
  spreadMs: number;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as Config;
const say = (m: Record<string, unknown>): void => void process.stdout.write(JSON.stringify(m) + '\n');
/** A key fingerprint's shape (base64url SHA-256): a heard advert is a hint, no key stands behind it. */
const fakeKey = (name: string): string => createHash('sha256').update(name).digest('base64url');

const mdns = createMdns({
  interface: cfg.interface,
  onError: (err) => say({ error: err.message }),
});
const pubs: Publication[] = [];
const timers: NodeJS.Timeout[] = [];
let stopping = false;

const stop = async (): Promise<void> => {
  if (stopping) return;
  stopping = true;
  for (const t of timers) clearTimeout(t);
  await mdns.close().catch(() => undefined);
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.stdin.on('end', () => void stop());

await mdns.ready();
say({ ready: true });
let buf = '';
process.stdin.setEncoding('utf8').on('data', (d: string) => {
  buf += d;
  if (!buf.includes('go\n') || timers.length) return;
  let published = 0;
  for (const name of cfg.names) {
    const publish = (): void => {
      if (stopping) return;
      pubs.push(
        mdns.publish({
          type: 'muster-join',
          name,
          host: `${name}.local`,
          port: 9,
          txt: nodeTxt({
            v: 1,
            name,
            role: 'worker',
            cluster: cfg.cluster,
            key: fakeKey(name),
            state: 'ready',
          }),
        }),
      );
      if (++published === cfg.names.length) say({ published, at: Date.now() });
    };
    timers.push(setTimeout(publish, Math.random() * cfg.spreadMs));
  }
});
