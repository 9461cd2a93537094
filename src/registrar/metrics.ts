/**
 * Prometheus metrics (prom-client), served on the admin socket at /metrics: requests by route and
 * status, join latency, nodes by state, install mode. One registry per registrar (no globals), so
 * several registrars in one process (tests) keep their own counts.
 */
// The four classes muster uses, file by file: prom-client's index also loads its default metrics, push
// gateway and cluster aggregator, and with them node's cluster, dgram, v8, perf_hooks and zlib, at
// every registrar start (issue 12, target 2). Types: src/types/prom-client-lib.d.ts.
import Counter from 'prom-client/lib/counter.js';
import Gauge from 'prom-client/lib/gauge.js';
import Histogram from 'prom-client/lib/histogram.js';
import PromRegistry from 'prom-client/lib/registry.js';
import type { NodeState } from '../store/types.js';
import type { PolicyStats } from './admission/policy-hook.js';

export class Metrics {
  readonly registry = new PromRegistry();
  readonly requests: Counter<'method' | 'route' | 'status'>;
  readonly joinSeconds: Histogram<'outcome'>;

  constructor(sources: {
    counts: () => Promise<Record<NodeState, number>>;
    installModeOn: () => Promise<boolean>;
    /** The policy hook's runs by outcome, and how many run now (with --policy-exec). */
    policyHook?: () => { stats: PolicyStats; active: number };
  }) {
    this.requests = new Counter({
      name: 'muster_http_requests_total',
      help: 'HTTPS API requests by method, route and status',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
    });
    this.joinSeconds = new Histogram({
      name: 'muster_join_duration_seconds',
      help: 'Time to answer POST /v1/join, by outcome',
      labelNames: ['outcome'],
      buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [this.registry],
    });
    new Gauge({
      name: 'muster_nodes',
      help: 'Nodes by state',
      labelNames: ['state'],
      registers: [this.registry],
      async collect() {
        for (const [state, n] of Object.entries(await sources.counts())) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'muster_install_mode_on',
      help: '1 while install mode is on',
      registers: [this.registry],
      async collect() {
        this.set((await sources.installModeOn()) ? 1 : 0);
      },
    });
    const hook = sources.policyHook;
    if (hook) {
      new Counter({
        name: 'muster_policy_hook_runs_total',
        help: 'Policy hook answers by outcome: accept, pending, reject; failed (bad exit, signal, no program), timeout, busy (queue full: the node waits)',
        labelNames: ['outcome'],
        registers: [this.registry],
        collect() {
          // The hook keeps its own counts (it runs before the metrics exist): mirror them.
          this.reset();
          for (const [outcome, n] of Object.entries(hook().stats)) this.inc({ outcome }, n);
        },
      });
      new Gauge({
        name: 'muster_policy_hooks_running',
        help: 'Policy hooks running now',
        registers: [this.registry],
        collect() {
          this.set(hook().active);
        },
      });
    }
  }

  /** Counts one HTTPS answer (the API's ResponseObserver). */
  observe(r: { method: string; route: string; status: number; seconds: number }): void {
    this.requests.inc({ method: r.method, route: r.route, status: String(r.status) });
    if (r.route === '/v1/join' && r.method === 'POST')
      this.joinSeconds.observe({ outcome: String(r.status) }, r.seconds);
  }

  /** Count of requests for one route (all statuses), for tests and the status page. */
  async requestCount(method: string, route: string): Promise<number> {
    const m = await this.requests.get();
    return m.values
      .filter((v) => v.labels.method === method && v.labels.route === route)
      .reduce((a, v) => a + v.value, 0);
  }
}
