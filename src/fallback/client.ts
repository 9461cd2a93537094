/**
 * The HTTPS client nodes use to talk to a registrar (DESIGN "HTTPS API"). Nodes reach the registrar
 * by whatever address mDNS or the URL gave, so they check the chain up to the CA and the registrar
 * id in the certificate (`<id>.registrar.muster`), never the address.
 *
 * Trust comes from, in order: a pinned CA fingerprint, the CA the node already holds from an earlier
 * registration, or trust on first use (logged as such; a token-authenticated bundle then proves the
 * CA after the fact, see node/bundle-check.ts).
 */
import https from 'node:https';
import type { Duplex } from 'node:stream';
import tls, { type TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { ErrorCodes, MusterError, type ErrorCode } from '../common/errors.js';
import { certFingerprint, chainProblem } from '../common/x509.js';
import { registrarDnsName } from '../common/names.js';

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

export type TrustBasis = 'pinned' | 'local-ca' | 'tofu';

export interface RegistrarInfo {
  v: number;
  id: string;
  cluster: string;
  role: string;
  ca: string;
  mode: string;
  version: string;
}

/** Socket error codes that mean the network failed, whatever the message says. */
const NETWORK_ERRORS = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

/** Largest answer the client reads (a bundle is a few kB; a CA chain with intermediates, tens). */
export const MAX_RESPONSE_BYTES = 1024 * 1024;

export interface HttpsJsonOptions {
  /** Default GET. */
  method?: string;
  /** Sent as JSON (content-type application/json). */
  body?: unknown;
  /** Sent as is, with content-type application/json: for tests of malformed input. */
  rawBody?: string | Buffer;
  /**
   * How the server is trusted, one of: `ca` (PEM: the chain must end at this CA; the host name is
   * checked unless `checkServerIdentity` says otherwise), `agent` (an https.Agent that carries the
   * trust, as RegistrarClient's does, its first contact included), or `insecure: true` (no check at
   * all: tests of the API contract). Without any of them, the system CAs.
   */
  ca?: string;
  agent?: https.Agent;
  insecure?: boolean;
  checkServerIdentity?: https.RequestOptions['checkServerIdentity'];
  /** Idle time allowed on the socket before the request fails (default 15 s). */
  timeoutMs?: number;
  /** Aborting rejects with the signal's reason (the caller's own error, e.g. MUSTER_ERR_TIMEOUT). */
  signal?: AbortSignal;
  /** Answers larger than this fail (default MAX_RESPONSE_BYTES). */
  maxBytes?: number;
  /** Also return the server's certificate (the first contact checks it against the CA it serves). */
  peer?: boolean;
}

export interface HttpsJsonResult extends HttpResult {
  peer?: X509Certificate;
  /** With `peer`: the other certificates the server sent after its own (a tier's intermediate). */
  peerChain?: X509Certificate[];
  /** With `peer`: the connection that certificate came on (RegistrarAgent.trust keeps using it). */
  peerSocket?: TLSSocket;
}

/**
 * The certificates a TLS server sent after its own, leaf side first (at most 4, no repeats), from the
 * peer certificate's `issuerCertificate` links. Not getPeerCertificate(true): that builds a detailed
 * object of every certificate (fingerprints, key, names) to be parsed again, about 0.6 ms of CPU per
 * first contact against 0.1 ms (issue 12, target 3). Node 20 hands the peer certificate with its
 * links out once per connection, so the caller gets it from here.
 */
function sentChain(peer: X509Certificate): X509Certificate[] {
  const out: X509Certificate[] = [];
  const seen = new Set<string>([peer.fingerprint256]);
  let c = peer;
  for (let i = 0; i < 4; i++) {
    const next = c.issuerCertificate;
    if (!next || seen.has(next.fingerprint256)) break;
    seen.add(next.fingerprint256);
    out.push(next);
    c = next;
  }
  return out;
}

/**
 * One JSON request over HTTPS, the one helper every client in muster uses. JSON answers
 * (content-type *json) are parsed, others returned as text, an empty body as undefined. The answer is
 * bounded (`maxBytes`). Failures are MusterErrors: MUSTER_ERR_TLS when the certificate check fails,
 * MUSTER_ERR_UNREACHABLE for anything else on the way (refused, reset, timeout, too large, malformed
 * JSON). An HTTP error status is not a failure here: callers read `status` and turn the API's
 * `{error, message}` into a MusterError with `apiError()`.
 */
export function httpsJson(url: string | URL, o: HttpsJsonOptions = {}): Promise<HttpsJsonResult> {
  const target = typeof url === 'string' ? new URL(url) : url;
  const method = o.method ?? 'GET';
  const timeoutMs = o.timeoutMs ?? 15_000;
  const maxBytes = o.maxBytes ?? MAX_RESPONSE_BYTES;
  const signal = o.signal;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const payload =
      o.rawBody !== undefined
        ? Buffer.from(o.rawBody)
        : o.body === undefined
          ? undefined
          : Buffer.from(JSON.stringify(o.body));
    const opts: https.RequestOptions = {
      method,
      // No agent given: one connection for this request, closed after it (nothing lingers).
      agent: o.agent ?? false,
      headers: {
        accept: 'application/json',
        ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
      },
      ...(o.insecure ? { rejectUnauthorized: false } : {}),
      ...(o.ca !== undefined ? { ca: o.ca, rejectUnauthorized: true } : {}),
      ...(o.checkServerIdentity ? { checkServerIdentity: o.checkServerIdentity } : {}),
    };
    const req = https.request(target, opts, (res) => {
      let peer: X509Certificate | undefined;
      let peerChain: X509Certificate[] | undefined;
      const peerSocket = o.peer ? (res.socket as TLSSocket) : undefined;
      if (peerSocket) {
        peer = peerSocket.getPeerX509Certificate();
        peerChain = peer ? sentChain(peer) : [];
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) {
          req.destroy(
            new MusterError(
              'MUSTER_ERR_UNREACHABLE',
              `${target.origin}: the answer is larger than ${maxBytes} bytes`,
            ),
          );
        } else chunks.push(c);
      });
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text === '' ? undefined : text;
        if ((res.headers['content-type'] ?? '').includes('json') && text) {
          try {
            body = JSON.parse(text);
          } catch {
            return reject(
              new MusterError(
                'MUSTER_ERR_UNREACHABLE',
                `${target.origin} sent malformed JSON (${res.statusCode})`,
              ),
            );
          }
        }
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          ...(peer ? { peer } : {}),
          ...(peerChain ? { peerChain } : {}),
          ...(peerSocket ? { peerSocket } : {}),
        });
      });
      res.on('error', (err) => req.destroy(err));
    });
    req.setTimeout(timeoutMs, () =>
      req.destroy(new Error(`no answer within ${Math.max(1, Math.round(timeoutMs / 1000))} s`)),
    );
    const onAbort = (): void => void req.destroy(signal!.reason as Error);
    signal?.addEventListener('abort', onAbort, { once: true });
    req.on('close', () => signal?.removeEventListener('abort', onAbort));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (signal?.aborted) return reject(signal.reason);
      if (err instanceof MusterError) return reject(err);
      // A connection that drops (reset, refused, timed out) is the network, even when it drops in the
      // middle of the TLS handshake ("socket disconnected before secure TLS connection was
      // established"): unreachable, retried, never a trust failure (exit 5 is not retried).
      const tls =
        !NETWORK_ERRORS.has(err.code ?? '') &&
        /certificate|self.signed|CERT_|SSL|TLS/i.test(`${err.code ?? ''} ${err.message}`);
      reject(
        new MusterError(
          tls ? 'MUSTER_ERR_TLS' : 'MUSTER_ERR_UNREACHABLE',
          `${target.origin}: ${err.message}`,
          {
            cause: err,
          },
        ),
      );
    });
    req.end(payload);
  });
}

/** The API codes of the error registry (DESIGN "HTTPS API": `{error, message}` with a stable code). */
const API_CODES = (Object.keys(ErrorCodes) as ErrorCode[]).filter((c) => ErrorCodes[c].status > 0);

/**
 * The MusterError an API error answer stands for. A code outside `understood` (default: every API
 * code of the registry) becomes `internal`: a registrar can never make a client report a local error
 * (a usage or timeout code) by naming it.
 */
export function apiError(res: HttpResult, understood: readonly ErrorCode[] = API_CODES): MusterError {
  const b = res.body as { error?: unknown; message?: unknown } | undefined;
  const code = typeof b?.error === 'string' ? b.error : 'internal';
  const message = typeof b?.message === 'string' ? b.message : `HTTP ${res.status}`;
  const known = (understood as readonly string[]).includes(code) && API_CODES.includes(code as ErrorCode);
  return new MusterError(known ? (code as ErrorCode) : 'internal', message);
}

/** Retry-After in ms (RFC 9110 §10.2.3, seconds form), capped at an hour; undefined when absent or bad. */
export function retryAfterMs(res: HttpResult): number | undefined {
  const h = res.headers['retry-after'];
  const raw = Array.isArray(h) ? h[0] : h;
  if (raw === undefined || raw.trim() === '') return undefined;
  const s = Number(raw);
  return Number.isFinite(s) && s >= 0 ? Math.min(s, 3600) * 1000 : undefined;
}

/** The peer certificate chains to `ca` directly or through a prefix of the intermediates it sent. */
function chainsTo(peer: X509Certificate, sent: X509Certificate[], ca: X509Certificate): boolean {
  const anchorFp = ca.fingerprint256;
  // The server may also send the root itself: it is the anchor, not an intermediate.
  const intermediates = sent.filter((c) => c.fingerprint256 !== anchorFp);
  for (let n = 0; n <= Math.min(intermediates.length, 1); n++) {
    if (chainProblem(peer, intermediates.slice(0, n), ca) === undefined) return true;
  }
  return false;
}

function hasRegistrarName(cert: X509Certificate, id: string): boolean {
  const want = `DNS:${registrarDnsName(id)}`;
  return (cert.subjectAltName ?? '').split(/,\s*/).includes(want);
}

/**
 * The TLS context of every first-contact connection (no CA: the first contact checks the certificate
 * itself). Building one (an OpenSSL SSL_CTX) costs about 0.4 ms of CPU, per node in a herd (issue 12,
 * target 3). Sharing it shares no state between registrars: it holds no CA and no key, and a client
 * never resumes a session unless it is handed one (`session`), which muster never does.
 */
let sharedUnchecked: tls.SecureContext | undefined;
const uncheckedContext = (): tls.SecureContext => (sharedUnchecked ??= tls.createSecureContext());

/**
 * The one keep-alive agent of a RegistrarClient: its first contact, join, long polls and ack to that
 * registrar share one TLS connection. Two handshakes per node (an unchecked one for the first contact,
 * a checked one for the rest) cost a herd's registrar and its nodes a full handshake each (issue 12,
 * target 3; docs/benchmarks.md "Herds of real agents").
 *
 * Until `trust()`, a connection is opened without a certificate check: the first contact checks the
 * certificate it got on that connection itself, against the CA the registrar serves and the pin or
 * the node's own CA (RegistrarClient.firstContact). `trust()` then keeps only that connection, the
 * one whose certificate was checked; any later connection is checked by TLS against the CA and the
 * registrar's name, as it always was. Each RegistrarClient has its own agent, so a connection is
 * never reused for another registrar. A connection's certificate cannot change under it when it
 * speaks TLS 1.3 (RFC 8446 has no renegotiation); a first contact that negotiated TLS 1.2 is not
 * kept, and the next request opens a checked connection. No TLS session is resumed: a session made
 * without the check must never stand in for a checked handshake.
 */
class RegistrarAgent extends https.Agent {
  private verified:
    { ca: string; checkServerIdentity: tls.ConnectionOptions['checkServerIdentity'] } | undefined;
  /** Connections opened before `trust()`: only `checked` among them may be used after it. */
  private readonly unchecked = new WeakSet<Duplex>();
  private checked: TLSSocket | undefined;

  constructor() {
    // One connection while the first contact runs; two once trusted (a long poll beside an ack).
    super({ keepAlive: true, maxSockets: 1 });
  }

  // The socket is returned, not passed to a callback: http.Agent takes either.
  override createConnection(options: tls.ConnectionOptions): Duplex {
    const v = this.verified;
    const socket = tls.connect(
      v
        ? { ...options, ca: v.ca, rejectUnauthorized: true, checkServerIdentity: v.checkServerIdentity }
        : { ...options, rejectUnauthorized: false, secureContext: uncheckedContext() },
    );
    if (!v) this.unchecked.add(socket);
    return socket;
  }

  override keepSocketAlive(socket: Duplex): boolean {
    if (this.verified && !this.usable(socket)) return false;
    return (super.keepSocketAlive as (s: Duplex) => boolean)(socket);
  }

  /** After the first contact: `socket` is the connection whose certificate it checked. */
  trust(
    ca: string,
    checkServerIdentity: tls.ConnectionOptions['checkServerIdentity'],
    socket?: TLSSocket,
  ): void {
    this.verified = { ca, checkServerIdentity };
    this.checked = socket?.getProtocol() === 'TLSv1.3' ? socket : undefined;
    this.maxSockets = 2;
    for (const list of Object.values(this.freeSockets)) {
      for (const s of [...(list ?? [])]) if (!this.usable(s)) s.destroy();
    }
  }

  private usable(socket: Duplex): boolean {
    return !this.unchecked.has(socket) || socket === this.checked;
  }
}

export class RegistrarClient {
  private constructor(
    readonly base: URL,
    readonly caPem: string,
    /** `caPem` as parsed at the first contact (the bundle check reuses it: a parse is ~0.6 ms). */
    readonly ca: X509Certificate,
    readonly info: RegistrarInfo,
    readonly trust: TrustBasis,
    private readonly agent: RegistrarAgent,
  ) {}

  /**
   * Opens a verified connection to a registrar. `pin`: the CA fingerprint the operator pinned;
   * `localCa`: the CA a previous registration left on this node.
   */
  static async connect(
    url: string,
    opts: { pin?: string; localCa?: string; advertisedCa?: string; timeoutMs?: number; signal?: AbortSignal },
  ): Promise<RegistrarClient> {
    let base: URL;
    try {
      base = new URL(url);
    } catch {
      throw new MusterError(
        'MUSTER_ERR_USAGE',
        `--registrar ${JSON.stringify(url)} is not a URL (e.g. https://10.0.0.1:8443)`,
      );
    }
    if (base.protocol !== 'https:')
      throw new MusterError('MUSTER_ERR_USAGE', `--registrar must be an https:// URL, not ${base.protocol}`);
    const timeoutMs = opts.timeoutMs ?? 15_000;
    // Both first requests share one connection (one TLS handshake), kept for the rest once checked.
    const agent = new RegistrarAgent();
    const first: HttpsJsonOptions = {
      timeoutMs,
      agent,
      ...(opts.signal ? { signal: opts.signal } : {}),
    };
    try {
      return await RegistrarClient.firstContact(base, opts, first, agent);
    } catch (err) {
      agent.destroy();
      throw err;
    }
  }

  /**
   * First contact: the CA cannot be checked by TLS yet; it is checked right after, against the pin or
   * the local CA, and the serving certificate against that CA.
   */
  private static async firstContact(
    base: URL,
    opts: { pin?: string; localCa?: string; advertisedCa?: string },
    first: HttpsJsonOptions,
    agent: RegistrarAgent,
  ): Promise<RegistrarClient> {
    const caRes = await httpsJson(new URL('/v1/ca', base), { ...first, peer: true });
    const peer = caRes.peer;
    if (caRes.status !== 200 || typeof caRes.body !== 'string') {
      throw new MusterError(
        'MUSTER_ERR_UNREACHABLE',
        `${base.origin} does not look like a muster registrar (GET /v1/ca: ${caRes.status})`,
      );
    }
    const caPem = caRes.body;
    let ca: X509Certificate;
    try {
      ca = new X509Certificate(caPem);
    } catch {
      throw new MusterError('MUSTER_ERR_TLS', `${base.origin} served a CA certificate that cannot be parsed`);
    }
    const fp = certFingerprint(caPem);
    if (opts.advertisedCa && fp !== opts.advertisedCa) {
      throw new MusterError(
        'MUSTER_ERR_CA_PIN',
        `the registrar at ${base.origin} advertised CA ${opts.advertisedCa} over mDNS but serves CA ${fp}`,
      );
    }
    let trust: TrustBasis = 'tofu';
    if (opts.pin) {
      if (fp !== opts.pin) {
        throw new MusterError(
          'MUSTER_ERR_CA_PIN',
          `the registrar at ${base.origin} has CA ${fp}, not the pinned ${opts.pin}`,
        );
      }
      trust = 'pinned';
    } else if (opts.localCa) {
      const localFp = certFingerprint(opts.localCa);
      if (fp !== localFp) {
        throw new MusterError(
          'MUSTER_ERR_CA_PIN',
          `the registrar at ${base.origin} has CA ${fp}, but this node already holds CA ${localFp} from an earlier registration`,
        );
      }
      trust = 'local-ca';
    }
    // A main registrar's certificate is signed by the root itself; a tier's (issue 11) by its
    // intermediate, which it sends along: the intermediates that lead to the root (and only those) must
    // be CAs signed in turn by it, so a tier whose intermediate another root issued is refused here.
    if (!peer || !chainsTo(peer, caRes.peerChain ?? [], ca)) {
      throw new MusterError(
        'MUSTER_ERR_TLS',
        `the TLS certificate of ${base.origin} is not issued by the CA it serves`,
      );
    }
    const infoRes = await httpsJson(new URL('/v1/info', base), first);
    const info = infoRes.body as RegistrarInfo;
    if (infoRes.status !== 200 || typeof info !== 'object' || typeof info?.id !== 'string') {
      throw new MusterError(
        'MUSTER_ERR_UNREACHABLE',
        `${base.origin} answered GET /v1/info with ${infoRes.status}`,
      );
    }
    if (!hasRegistrarName(peer, info.id) || info.ca !== fp) {
      throw new MusterError(
        'MUSTER_ERR_TLS',
        `the TLS certificate of ${base.origin} is not registrar ${info.id}'s`,
      );
    }
    const expected = registrarDnsName(info.id);
    agent.trust(
      caPem,
      // The chain is checked by TLS against our CA only; the name we need is the registrar id, not the host.
      (_host, cert) => {
        const sans = (cert.subjectaltname ?? '').split(/,\s*/);
        return sans.includes(`DNS:${expected}`)
          ? undefined
          : new Error(
              `the server certificate is not registrar ${info.id}'s (${cert.subjectaltname ?? 'no SAN'})`,
            );
      },
      caRes.peerSocket,
    );
    return new RegistrarClient(base, caPem, ca, info, trust, agent);
  }

  async call(
    method: string,
    path: string,
    body?: unknown,
    timeoutMs = 15_000,
    signal?: AbortSignal,
  ): Promise<HttpResult> {
    return httpsJson(new URL(path, this.base), {
      method,
      ...(body !== undefined ? { body } : {}),
      agent: this.agent,
      timeoutMs,
      ...(signal ? { signal } : {}),
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
