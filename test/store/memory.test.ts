/** The memory backend against the registry contract. */
import { MemoryRegistry } from '../../src/store/memory.js';
import { registryContract } from './contract.js';

registryContract('memory', async (opts) => {
  const registry = await MemoryRegistry.create(opts);
  return { registry, cleanup: () => registry.close() };
});
