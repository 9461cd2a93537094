/**
 * Opening a registry by kind (DESIGN "Store backends"). Callers see only the Registry interface;
 * which backend stands behind it is chosen here, once, at start.
 */
import type { Registry, RegistryOptions } from './registry.js';
import { LevelRegistry } from './level.js';
import { MemoryRegistry } from './memory.js';

export * from './registry.js';
export { LevelRegistry } from './level.js';
export { MemoryRegistry } from './memory.js';

export type RegistrySpec =
  | { kind: 'level'; dir: string }
  | { kind: 'memory' }
  | { kind: 'etcd'; endpoints: string[]; prefix?: string };

export async function openRegistry(spec: RegistrySpec, opts: RegistryOptions = {}): Promise<Registry> {
  switch (spec.kind) {
    case 'level':
      return LevelRegistry.open(spec.dir, opts);
    case 'memory':
      return MemoryRegistry.create(opts);
    case 'etcd': {
      // The etcd client (gRPC) loads only for a registrar that uses it.
      const { EtcdRegistry } = await import('./etcd.js');
      return EtcdRegistry.open(
        { endpoints: spec.endpoints, ...(spec.prefix ? { prefix: spec.prefix } : {}) },
        opts,
      );
    }
  }
}
