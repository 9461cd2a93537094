/**
 * Following the event log (DESIGN "Events"): the stored events after a sequence number, then the live
 * ones, each once and in order. `muster events --follow` (admin-api.ts, NDJSON) and the admin web
 * page (admin-web.ts, SSE) both stream through it; a client that reconnects passes the last number
 * it got and loses nothing (issue 13, item 2).
 */
import type { MusterEvent } from '../store/types.js';
import type { RegistrarService } from './service.js';

/**
 * Follows the event log from `after`: the stored events first, then live ones, each once and in
 * order (the live ones that arrive during the replay wait for it). Returns the function that stops.
 */
export function followEvents(
  svc: Pick<RegistrarService, 'registry'>,
  after: number,
  send: (ev: MusterEvent) => void,
  onError: (err: Error) => void,
): () => void {
  let last = after;
  let replaying = true;
  let stopped = false;
  const buffered: MusterEvent[] = [];
  const write = (ev: MusterEvent): void => {
    if (stopped || ev.seq <= last) return;
    last = ev.seq;
    send(ev);
  };
  const unwatch = svc.registry.watch((ev) => (replaying ? buffered.push(ev) : write(ev)));
  void (async () => {
    try {
      for (;;) {
        const page = await svc.registry.listEvents(last, 1000);
        for (const ev of page) write(ev);
        if (page.length < 1000 || stopped) break;
      }
      replaying = false;
      for (const ev of buffered.splice(0)) write(ev);
    } catch (err) {
      stopped = true;
      unwatch();
      onError(err as Error);
    }
  })();
  return () => {
    stopped = true;
    unwatch();
  };
}
