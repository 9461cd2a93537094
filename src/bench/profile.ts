/**
 * Summarises a V8 .cpuprofile (the --cpu-prof format): self time by package / area and by function,
 * and inclusive time of the functions on muster's join path. Idle time is left out of every share.
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** CPU time seen by the profiler (ms, idle excluded). */
  busyMs: number;
  byArea: { area: string; ms: number; pct: number }[];
  byFunction: { fn: string; area: string; ms: number; pct: number }[];
  inclusive: { fn: string; ms: number; pct: number }[];
}

/** Where a frame's code lives: an npm package, a muster module, a part of Node, V8 or native code. */
export function areaOf(f: CallFrame): string {
  const url = f.url;
  if (!url) {
    if (f.functionName.startsWith('(')) return f.functionName; // (program), (garbage collector), (idle), (root)
    return 'native (V8 builtins, C++ bindings)';
  }
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const parts = url.slice(nm + 14).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  const d = url.indexOf('/dist/');
  if (d >= 0) return 'muster ' + url.slice(d + 6);
  if (url.startsWith('node:')) {
    // node:internal/tls/wrap -> node:tls ; node:internal/crypto/sig -> node:crypto
    const p = url
      .slice(5)
      .replace(/^internal\//, '')
      .split('/');
    return 'node:' + p[0]!.replace(/_.*$/, '');
  }
  return url;
}

const short = (url: string): string =>
  url.replace(/^.*\/(node_modules|dist)\//, '').replace(/^file:\/\//, '');

export function summariseProfile(file: string, inclusiveOf: string[] = [], top = 20): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, ProfileNode>();
  for (const n of p.nodes) for (const c of n.children ?? []) parentOf.set(c, n);
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    // timeDeltas[i] is the time before sample i; attribute the time after a sample to it.
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + dt);
  }
  let busy = 0;
  const area = new Map<string, number>();
  const fn = new Map<string, { area: string; ms: number }>();
  for (const [id, ms] of self) {
    const f = byId.get(id)!.callFrame;
    if (f.functionName === '(idle)') continue;
    busy += ms;
    const a = areaOf(f);
    area.set(a, (area.get(a) ?? 0) + ms);
    let key =
      `${f.functionName || '(anonymous)'} ${f.url ? short(f.url) + ':' + (f.lineNumber + 1) : ''}`.trim();
    if (!f.url && !f.functionName.startsWith('(')) {
      // A native frame says little on its own ("run", "init"): name the JS function that called it.
      const caller = parentOf.get(id)?.callFrame;
      if (caller?.url)
        key += ` <- ${caller.functionName || '(anonymous)'} ${short(caller.url)}:${caller.lineNumber + 1}`;
    }
    const e = fn.get(key) ?? { area: a, ms: 0 };
    e.ms += ms;
    fn.set(key, e);
  }

  // Inclusive time of named functions (a recursive or re-entered function counts once per stack).
  const total = new Map<number, number>();
  const totalOf = (id: number): number => {
    const cached = total.get(id);
    if (cached !== undefined) return cached;
    const n = byId.get(id)!;
    let t = n.callFrame.functionName === '(idle)' ? 0 : (self.get(id) ?? 0);
    for (const c of n.children ?? []) t += totalOf(c);
    total.set(id, t);
    return t;
  };
  const root = p.nodes[0]!.id;
  totalOf(root);
  // Each entry is `functionName` or `functionName@part-of-its-url` (join@registrar/service.js).
  const specs = inclusiveOf.map((s) => {
    const [f, u] = s.split('@');
    return { key: s, fn: f!, url: u };
  });
  const inclusive = new Map<string, number>(inclusiveOf.map((f) => [f, 0]));
  const match = (f: CallFrame): string | undefined =>
    specs.find((s) => s.fn === f.functionName && (s.url === undefined || f.url.includes(s.url)))?.key;
  const walk = (id: number, open: Set<string>): void => {
    const n = byId.get(id)!;
    const name = match(n.callFrame) ?? '';
    const counts = name !== '' && !open.has(name);
    if (counts) inclusive.set(name, inclusive.get(name)! + total.get(id)!);
    if (counts) open.add(name);
    for (const c of n.children ?? []) walk(c, open);
    if (counts) open.delete(name);
  };
  walk(root, new Set());

  const pct = (ms: number): number => (busy > 0 ? (100 * ms) / busy : 0);
  return {
    busyMs: busy,
    byArea: [...area].map(([a, ms]) => ({ area: a, ms, pct: pct(ms) })).sort((x, y) => y.ms - x.ms),
    byFunction: [...fn]
      .map(([k, v]) => ({ fn: k, area: v.area, ms: v.ms, pct: pct(v.ms) }))
      .sort((x, y) => y.ms - x.ms)
      .slice(0, top),
    inclusive: [...inclusive].map(([f, ms]) => ({ fn: f, ms, pct: pct(ms) })).sort((x, y) => y.ms - x.ms),
  };
}
