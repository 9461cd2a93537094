// The advertiser: DNS-SD publish and browse (mdns.ts), the TXT codec and advertisement validators (txt.ts).
export * from './txt.js';
export * from './errors.js';
export { createMdns } from './mdns.js';
export type {
  BrowseHandle,
  BrowseHandlers,
  BrowseOptions,
  Discovered,
  Mdns,
  MdnsLogger,
  MdnsOptions,
  Publication,
  PublicationState,
  PublishSpec,
  ServiceKind,
} from './mdns.js';
export { SERVICE_TYPES } from './records.js';
export * from './listing.js';
