/**
 * The registration endpoint's messages as TypeScript types (DESIGN "HTTPS API"); the JSON schemas
 * that validate them are in schemas.ts. Shared by the HTTPS routes, the registrar that answers them
 * and the node that sends them.
 */
import type { Bundle } from '../common/proof.js';

export interface JoinProof {
  id: string;
  ts: number;
  hmac: string;
}

export interface JoinRequest {
  name: string;
  role: string;
  cluster: string;
  csr: string;
  proof?: JoinProof;
}

/** What a join or a long poll answers: the bundle, or "wait" with the reason. */
export type JoinOutcome =
  { status: 200 | 201; bundle: Bundle } | { status: 202; state: string; retryAfter: number; reason: string };

/** Proof that the poller holds the node key: a fingerprint alone is public (TXT, 409 answers). */
export interface PollProof {
  ts: number;
  sig: string;
}

/** A request signed with the node key (ack, leave). */
export interface SignedRequest {
  key: string;
  serial: string;
  ts: number;
  sig: string;
}

/**
 * A renewal (POST /v1/renew, DESIGN "HTTPS API"): signed by the current key over
 * ('renew', name, renewRef(serial, newKey?), ts); with `newCsr` the node rotates to the CSR's key,
 * which the CSR's own signature proves.
 */
export interface RenewRequest extends SignedRequest {
  newCsr?: string;
}

export interface RegistrarInfoReply {
  v: 1;
  id: string;
  cluster: string;
  role: 'main' | 'cluster';
  ca: string;
  mode: 'open' | 'token' | 'closed';
  version: string;
}

/**
 * What the HTTPS routes need from a registrar. The routes know nothing else of it (the dependency
 * points down: registrar -> fallback).
 */
export interface RegistrationEndpoint {
  info(): Promise<RegistrarInfoReply>;
  caPem(): string;
  join(req: JoinRequest, address: string): Promise<JoinOutcome>;
  /** The long poll; `proof` signs ('poll', name, key, ts) with the node key. */
  poll(name: string, key: string, waitMs: number, proof: PollProof): Promise<JoinOutcome>;
  ack(name: string, body: SignedRequest): Promise<void>;
  leave(name: string, body: SignedRequest): Promise<void>;
  /** A registered node renews (and checks in): a new certificate and the current config. */
  renew(name: string, body: RenewRequest): Promise<Bundle>;
  /** The CA's current CRL (RFC 5280 §5), DER. */
  crl(): Promise<Buffer>;
}
