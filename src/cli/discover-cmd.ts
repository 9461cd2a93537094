/**
 * `muster discover` (DESIGN "CLI", issue 11 item 2): the registrars and clusters heard on the LAN.
 * Browses `_muster._tcp` for --timeout, then prints one line (or one JSON item) per advertisement:
 * id, role, cluster, CA fingerprint, mode, addresses and port, versions, and where it was heard from.
 *
 * What it prints came from packets anyone on the link can send: a hint for the operator (which CA to
 * pin, which cluster to ask for), never proof. Compare the CA with `muster ca` on the registrar.
 */
import { MusterError } from '../common/errors.js';
import { formatDuration } from '../common/names.js';
import type { Listing, ListedRegistrar } from '../advertiser/listing.js';
import { command } from './command.js';
import { out, printJson, table } from './output.js';

// The mDNS stack loads only when this command runs.
const loadMdns = () => import('../advertiser/index.js');
const loadDiscovery = () => import('../node/discovery.js');

/** Invalid advertisements described one by one on stderr at most (the rest are counted). */
const INVALID_SHOWN = 8;

export const discoverCommand = command({
  name: 'discover',
  describe: 'list the registrars and clusters heard on the LAN (mDNS)',
  scopes: ['discover', 'output'],
  examples: [
    ['$0 discover', 'listen for 2 s and list the registrars that answer'],
    ['$0 discover --json --timeout 5s --interface 10.0.0.5', 'on one interface, for scripts'],
  ],
  async run(o) {
    const { createLogger } = await import('../common/log.js');
    const log = createLogger({
      name: 'muster-discover',
      fd: 2,
      level: process.env.MUSTER_LOG_LEVEL ?? 'warn',
    });
    const { createMdns, listRegistrars } = await loadMdns();
    const { browseRegistrars } = await loadDiscovery();
    const mdns = createMdns({
      // Nothing is published; the host name only labels the stack.
      host: 'muster-discover.local',
      ...(o.interface ? { interface: o.interface } : {}),
      logger: log,
      onError: (err) => log.warn({ err: err.message, code: (err as { code?: string }).code }, 'mDNS error'),
    });
    // Ctrl-C lists what was heard so far.
    const stop = new AbortController();
    const onSignal = (): void => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    let listing: Listing;
    try {
      try {
        await mdns.ready();
      } catch (err) {
        throw new MusterError('MUSTER_ERR_MDNS', `mDNS cannot be used: ${(err as Error).message}`);
      }
      const heard = await browseRegistrars({ mdns, timeoutMs: o.timeout, signal: stop.signal });
      listing = listRegistrars(heard, o.cluster !== undefined ? { cluster: o.cluster } : {});
    } finally {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      await mdns.close();
    }

    if (o.json) printJson({ items: listing.items.map(itemJson), invalid: listing.invalid });
    else if (listing.items.length > 0) {
      const { caShort } = await import('../advertiser/listing.js');
      out(listingTable(listing.items, caShort));
    }
    const err = (s: string): void => void process.stderr.write(s);
    if (listing.items.length === 0) {
      err(
        `no registrar${o.cluster !== undefined ? ` of cluster ${o.cluster}` : ''} heard within ${formatDuration(o.timeout)}` +
          ' (a longer --timeout? the right --interface? UDP 5353 open? the registrar not run with --mdns off?)\n',
      );
    }
    if (listing.invalid.length > 0) {
      err(
        `ignored ${listing.invalid.length} invalid advertisement${listing.invalid.length === 1 ? '' : 's'}:\n`,
      );
      for (const i of listing.invalid.slice(0, INVALID_SHOWN))
        err(`  ${i.instance || '(no name)'} from ${i.heardFrom ?? 'unknown'}: ${i.reason}\n`);
      if (listing.invalid.length > INVALID_SHOWN)
        err(`  and ${listing.invalid.length - INVALID_SHOWN} more\n`);
    }
    if (listing.omitted > 0) err(`${listing.omitted} more advertisements not listed\n`);
  },
});

/** The documented JSON of one registrar (docs/cli-json.md "Registrar (discover)"). */
function itemJson(r: ListedRegistrar): Record<string, unknown> {
  return {
    id: r.id,
    instance: r.instance,
    role: r.role,
    cluster: r.cluster,
    ca: r.ca,
    mode: r.mode,
    addresses: r.addresses,
    port: r.port,
    v: r.v,
    software: r.software,
    heardFrom: r.heardFrom,
  };
}

function listingTable(items: readonly ListedRegistrar[], caShort: (ca: string) => string): string {
  // Short CA in the table (as much as tells them apart by eye); --json has it whole.
  return table(
    ['ID', 'ROLE', 'CLUSTER', 'CA', 'MODE', 'ADDRESS', 'VERSION', 'HEARD FROM'],
    items.map((r) => [
      r.id,
      r.role,
      r.cluster,
      `${caShort(r.ca)}…`,
      r.mode,
      r.addresses.map((a) => (a.includes(':') ? `[${a}]:${r.port}` : `${a}:${r.port}`)).join(','),
      `v${r.v}${r.software ? ` ${r.software}` : ''}`,
      r.heardFrom ?? undefined,
    ]),
  );
}
