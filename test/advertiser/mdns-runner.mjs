/* global process */
// Test-only: runs the compiled advertiser (dist/advertiser/mdns.js, path in MDNS_MODULE) inside a netns
// host, driven by JSON lines on stdin, reporting events as JSON lines on stdout. Started by
// test/advertiser/driver.ts through test/helpers/netlan.ts; never run on the machine's real interfaces.
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

const { createMdns } = await import(pathToFileURL(process.env.MDNS_MODULE).href);
const out = (msg) => process.stdout.write(JSON.stringify({ t: Date.now(), ...msg }) + '\n');
const log = (level) => (obj, msg) => out({ ev: 'log', level, msg, obj });
const opts = JSON.parse(process.env.MDNS_OPTS ?? '{}');
const mdns = createMdns({
  ...opts,
  logger: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') },
  onError: (err) => out({ ev: 'error', code: err.code, message: err.message }),
});
const pubs = new Map();
const browsers = new Map();
const view = (s) => ({
  name: s.name,
  fqdn: s.fqdn,
  host: s.host,
  port: s.port,
  addresses: s.addresses,
  referer: s.referer,
  txt: Object.fromEntries(s.txt),
  rawTxt: s.rawTxt.map((b) => b.toString('hex')),
});

const ops = {
  async publish({ pub, spec }) {
    const p = mdns.publish(spec);
    pubs.set(pub, p);
    p.whenAnnounced().then(
      () => out({ ev: 'announced', pub }),
      (err) => out({ ev: 'not-announced', pub, code: err.code, message: err.message }),
    );
    return { host: p.host, fqdn: p.fqdn };
  },
  async updateTxt({ pub, txt }) {
    pubs.get(pub).updateTxt(txt);
  },
  async stop({ pub }) {
    await pubs.get(pub).stop();
  },
  async state({ pub }) {
    return pubs.get(pub).state;
  },
  async browse({ browse, type }) {
    browsers.set(
      browse,
      mdns.browse(type, {
        up: (s) => out({ ev: 'up', browse, service: view(s) }),
        update: (s) => out({ ev: 'update', browse, service: view(s) }),
        down: (s) => out({ ev: 'down', browse, service: view(s) }),
      }),
    );
  },
  async list({ browse }) {
    return browsers.get(browse).list().map(view);
  },
  async close() {
    await mdns.close();
  },
  /** Keeps the event loop busy for `ms` (a registrar busy for a moment): datagrams wait in the socket. */
  async busy({ ms }) {
    out({ ev: 'busy' }); // stdout is a pipe: written before the loop blocks
    const end = Date.now() + ms;
    while (Date.now() < end);
  },
};

mdns.ready().then(
  () => out({ ev: 'ready' }),
  (err) => out({ ev: 'error', code: err.code, message: err.message }),
);

createInterface({ input: process.stdin }).on('line', async (line) => {
  const cmd = JSON.parse(line);
  try {
    const result = await ops[cmd.op](cmd);
    out({ ev: 'ack', id: cmd.id, result });
  } catch (err) {
    out({ ev: 'ack', id: cmd.id, error: String(err && err.message ? err.message : err) });
  }
});

// CONVENTIONS 7: SIGTERM withdraws advertisements (goodbyes awaited), then exits 0.
process.on('SIGTERM', async () => {
  await mdns.close();
  out({ ev: 'closed' });
  process.exit(0);
});
