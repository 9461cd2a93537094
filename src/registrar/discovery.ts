/**
 * The registrar on the LAN (DESIGN "Discovery"): advertises `_muster._tcp` ("I am the main") with a
 * TXT that follows install mode and tokens, and listens for `_muster-join._tcp` ("ready to register
 * as X"). What it hears is untrusted: validated, bounded, logged once when garbage, and never enough to
 * issue on its own (a node still sends a CSR for the key it advertised).
 */
import {
  createMdns,
  registrarTxt,
  validateNodeTxt,
  type Discovered,
  type Mdns,
  type Publication,
} from '../advertiser/index.js';
import type { Logger } from '../common/log.js';
import { VERSION } from '../common/version.js';
import type { MusterEvent } from '../store/types.js';
import type { RegistrarService } from './service.js';

export interface RegistrarDiscoveryOptions {
  service: RegistrarService;
  log: Logger;
  registrarId: string;
  cluster: string;
  caFingerprint: string;
  /** `cluster` for a tier registrar (issue 11): its TXT says role=cluster, ca= the parent's root. */
  role?: 'main' | 'cluster';
  port: number;
  /** IPv4 address of the interface to advertise on. */
  interface?: string;
  /** The advertiser to use (tests pass a fake: no multicast outside a test namespace); default: createMdns. */
  mdns?: Mdns;
}

export interface RegistrarDiscovery {
  mdns: Mdns;
  /** Goodbye packets sent and awaited, socket closed. */
  close(): Promise<void>;
}

const MAX_GARBAGE_LOGGED = 256;

export async function startRegistrarDiscovery(o: RegistrarDiscoveryOptions): Promise<RegistrarDiscovery> {
  const log = o.log.child({ component: 'mdns' });
  const mdns =
    o.mdns ??
    createMdns({
      ...(o.interface ? { interface: o.interface } : {}),
      host: `${o.registrarId}.local`,
      logger: log,
      onError: (err) => log.error({ err: err.message, code: (err as { code?: string }).code }, 'mDNS error'),
    });
  await mdns.ready();

  const txt = async (): Promise<Record<string, string>> =>
    registrarTxt({
      v: 1,
      role: o.role ?? 'main',
      cluster: o.cluster,
      ca: o.caFingerprint,
      mode: await o.service.mode(),
      id: o.registrarId,
      sw: VERSION, // informative, for `muster discover` (docs/discovery.md)
    });
  let current = await txt();
  const pub: Publication = mdns.publish({ type: 'muster', name: o.registrarId, port: o.port, txt: current });

  // The TXT follows admission changes (install mode on/off, tokens) as a new announcement. The store
  // tells watchers after the change is durable and readable, so the state read here is the new one
  // (state first, then the event); refreshes run one after another, in event order.
  let refreshing = Promise.resolve();
  const refresh = async (): Promise<void> => {
    const next = await txt();
    if (next.mode === current.mode) return;
    current = next;
    pub.updateTxt(next);
    log.info({ mode: next.mode }, 'advertisement updated');
  };
  const onEvent = (ev: MusterEvent): void => {
    if (ev.type !== 'install-mode' && ev.type !== 'token') return;
    refreshing = refreshing
      .then(refresh)
      .catch((err: Error) => log.warn({ err: err.message }, 'could not update the advertisement'));
  };
  const unwatch = o.service.registry.watch(onEvent);

  const garbage = new Set<string>();
  const heard = (s: Discovered): void => {
    const v = validateNodeTxt(s.txt);
    if (!v.ok) {
      const key = `${s.name}|${v.reason}`;
      if (!garbage.has(key) && garbage.size < MAX_GARBAGE_LOGGED) {
        garbage.add(key);
        log.warn(
          { instance: s.name.slice(0, 80), from: s.referer, reason: v.reason },
          'ignoring an invalid join advertisement',
        );
      }
      return;
    }
    if (v.value.state !== 'ready') return;
    o.service
      .heard(v.value, s.addresses.length ? s.addresses : s.referer ? [s.referer] : [])
      .catch((err: Error) =>
        log.warn({ node: v.value.name, err: err.message }, 'could not record a heard node'),
      );
  };
  const browser = mdns.browse('muster-join', { up: heard, update: heard });

  log.info(
    { id: o.registrarId, port: o.port, interface: o.interface ?? 'all' },
    'advertising _muster._tcp, listening for _muster-join._tcp',
  );
  return {
    mdns,
    async close() {
      unwatch();
      await refreshing;
      browser.stop();
      await mdns.close();
    },
  };
}
