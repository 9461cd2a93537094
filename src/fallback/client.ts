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
import type { TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { MusterError } from '../common/errors.js';
import { certFingerprint } from '../common/x509.js';
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

function request(
  url: URL,
  method: string,
  body: unknown,
  opts: https.RequestOptions & { timeoutMs: number; signal?: AbortSignal },
  onSocket?: (s: TLSSocket) => void,
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) return reject(opts.signal.reason);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = https.request(
      url,
      {
        ...opts,
        method,
        headers: {
          accept: 'application/json',
          ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
        },
      },
      (res) => {
        if (onSocket) onSocket(res.socket as TLSSocket);
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > 1024 * 1024) req.destroy(new Error('response too large'));
          else chunks.push(c);
        });
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          if ((res.headers['content-type'] ?? '').includes('json') && text) {
            try {
              parsed = JSON.parse(text);
            } catch {
              return reject(new MusterError('MUSTER_ERR_UNREACHABLE', `the registrar sent malformed JSON (${res.statusCode})`));
            }
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(opts.timeoutMs, () => req.destroy(new Error(`no answer within ${Math.round(opts.timeoutMs / 1000)} s`)));
    const onAbort = (): void => void req.destroy(opts.signal!.reason as Error);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('close', () => opts.signal?.removeEventListener('abort', onAbort));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (opts.signal?.aborted) return reject(opts.signal.reason);
      if (err instanceof MusterError) return reject(err);
      const tls = /certificate|self.signed|CERT_|SSL|TLS/i.test(`${err.code ?? ''} ${err.message}`);
      reject(
        new MusterError(tls ? 'MUSTER_ERR_TLS' : 'MUSTER_ERR_UNREACHABLE', `${url.origin}: ${err.message}`, { cause: err }),
      );
    });
    req.end(payload);
  });
}

function hasRegistrarName(cert: X509Certificate, id: string): boolean {
  const want = `DNS:${registrarDnsName(id)}`;
  return (cert.subjectAltName ?? '').split(/,\s*/).includes(want);
}

export class RegistrarClient {
  private readonly agent: https.Agent;

  private constructor(
    readonly base: URL,
    readonly caPem: string,
    readonly info: RegistrarInfo,
    readonly trust: TrustBasis,
  ) {
    const expected = registrarDnsName(info.id);
    this.agent = new https.Agent({
      keepAlive: true,
      maxSockets: 2,
      ca: caPem,
      rejectUnauthorized: true,
      // The chain is checked by TLS against our CA only; the name we need is the registrar id, not the host.
      checkServerIdentity: (_host, cert) => {
        const sans = (cert.subjectaltname ?? '').split(/,\s*/);
        return sans.includes(`DNS:${expected}`)
          ? undefined
          : new Error(`the server certificate is not registrar ${info.id}'s (${cert.subjectaltname ?? 'no SAN'})`);
      },
    });
  }

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
      throw new MusterError('MUSTER_ERR_USAGE', `--registrar ${JSON.stringify(url)} is not a URL (e.g. https://10.0.0.1:8443)`);
    }
    if (base.protocol !== 'https:') throw new MusterError('MUSTER_ERR_USAGE', `--registrar must be an https:// URL, not ${base.protocol}`);
    const timeoutMs = opts.timeoutMs ?? 15_000;
    // Both first requests share one connection (one TLS handshake), dropped afterwards.
    const firstAgent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
    const first = { rejectUnauthorized: false, timeoutMs, agent: firstAgent, ...(opts.signal ? { signal: opts.signal } : {}) };
    try {
      return await RegistrarClient.firstContact(base, opts, first);
    } finally {
      firstAgent.destroy();
    }
  }

  /**
   * First contact: the CA cannot be checked by TLS yet; it is checked right after, against the pin or
   * the local CA, and the serving certificate against that CA.
   */
  private static async firstContact(
    base: URL,
    opts: { pin?: string; localCa?: string; advertisedCa?: string },
    first: https.RequestOptions & { timeoutMs: number; signal?: AbortSignal },
  ): Promise<RegistrarClient> {
    let peer: X509Certificate | undefined;
    const caRes = await request(new URL('/v1/ca', base), 'GET', undefined, first, (s) => {
      peer = s.getPeerX509Certificate();
    });
    if (caRes.status !== 200 || typeof caRes.body !== 'string') {
      throw new MusterError('MUSTER_ERR_UNREACHABLE', `${base.origin} does not look like a muster registrar (GET /v1/ca: ${caRes.status})`);
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
      throw new MusterError('MUSTER_ERR_CA_PIN', `the registrar at ${base.origin} advertised CA ${opts.advertisedCa} over mDNS but serves CA ${fp}`);
    }
    let trust: TrustBasis = 'tofu';
    if (opts.pin) {
      if (fp !== opts.pin) {
        throw new MusterError('MUSTER_ERR_CA_PIN', `the registrar at ${base.origin} has CA ${fp}, not the pinned ${opts.pin}`);
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
    if (!peer || !peer.checkIssued(ca) || !peer.verify(ca.publicKey)) {
      throw new MusterError('MUSTER_ERR_TLS', `the TLS certificate of ${base.origin} is not issued by the CA it serves`);
    }
    const infoRes = await request(new URL('/v1/info', base), 'GET', undefined, first);
    const info = infoRes.body as RegistrarInfo;
    if (infoRes.status !== 200 || typeof info !== 'object' || typeof info?.id !== 'string') {
      throw new MusterError('MUSTER_ERR_UNREACHABLE', `${base.origin} answered GET /v1/info with ${infoRes.status}`);
    }
    if (!hasRegistrarName(peer, info.id) || info.ca !== fp) {
      throw new MusterError('MUSTER_ERR_TLS', `the TLS certificate of ${base.origin} is not registrar ${info.id}'s`);
    }
    return new RegistrarClient(base, caPem, info, trust);
  }

  async call(method: string, path: string, body?: unknown, timeoutMs = 15_000, signal?: AbortSignal): Promise<HttpResult> {
    return request(new URL(path, this.base), method, body, { agent: this.agent, timeoutMs, ...(signal ? { signal } : {}) });
  }

  close(): void {
    this.agent.destroy();
  }
}
