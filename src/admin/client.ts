/**
 * The client of the registrar's admin API on its Unix socket (src/registrar/admin-api.ts): the
 * operator CLI's, and the tests'. Errors are MusterErrors from the one registry (CONVENTIONS 3): the
 * server's code when this version knows it, with the server's message for a person.
 */
import http from 'node:http';
import { ErrorCodes, MusterError, type ErrorCode } from '../common/errors.js';
import type { RegistrarInfo } from '../fallback/client.js';
import type { InstallModeState, TokenRecord } from '../store/types.js';

// ---- the wire format of the admin API (its answers, as sent) ----

/** Install mode as the registrar reports it: the stored state and a sentence for a person. */
export type WireInstallMode = InstallModeState & { description: string };

/** A token as the admin API lists it: the record without its secret, and its state (valid, expired, ...). */
export type WireToken = Omit<TokenRecord, 'secret'> & { state: string };

export interface WireNode {
  name: string;
  state: string;
  key: string;
  role: string;
  cluster: string;
  channel: string;
  addresses: string[];
  decision?: { rule: string; detail: string; at: string; [k: string]: unknown };
  pendingReason?: string;
  times: Record<string, string>;
  lastSeen: string;
  group?: string;
  tokenId?: string;
  serial?: string;
  notAfter?: string;
  issuedAt?: string;
  [k: string]: unknown;
}

export interface WireEvent {
  seq: number;
  at: string;
  type: string;
  name?: string;
  detail?: Record<string, unknown>;
}

/** The registrar's status: what GET /v1/info says of it (`ca` is the pin), with counts and install mode. */
export interface WireStatus extends RegistrarInfo {
  [k: string]: unknown;
}

const isKnownCode = (code: unknown): code is ErrorCode =>
  typeof code === 'string' && Object.hasOwn(ErrorCodes, code);

/** An error answer of the admin API as a MusterError (the server's code and message). */
export function adminError(status: number, body: unknown): MusterError {
  const e = (typeof body === 'object' && body !== null ? body : {}) as { error?: unknown; message?: unknown };
  const message =
    typeof e.message === 'string' && e.message.trim() ? e.message : `the registrar answered HTTP ${status}`;
  if (isKnownCode(e.error)) return new MusterError(e.error, message);
  return new MusterError('MUSTER_ERR_ADMIN_REPLY', message, { details: { status, code: e.error } });
}

export class AdminClient {
  constructor(readonly socketPath: string) {}

  /**
   * The admin socket, and no TLS server name: node's HTTP agent otherwise works one out from the Host
   * header for every request, asking net.isIP() whether 'localhost' is an IP address, and its first
   * IPv6 test compiles a regular expression that costs 8-20 ms, about a tenth of a `muster tokens
   * list` (issue 12, target 2). Plain HTTP on a Unix socket has no use for one.
   */
  private endpoint(): http.RequestOptions {
    return { socketPath: this.socketPath, servername: '' } as http.RequestOptions;
  }

  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = http.request(
        {
          ...this.endpoint(),
          path,
          method,
          headers: payload
            ? { 'content-type': 'application/json', 'content-length': String(payload.length) }
            : {},
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) => reject(this.socketError(err)));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              return reject(
                new MusterError(
                  'MUSTER_ERR_ADMIN_REPLY',
                  `the registrar answered with malformed JSON (HTTP ${res.statusCode})`,
                ),
              );
            }
            if ((res.statusCode ?? 500) >= 400) return reject(adminError(res.statusCode ?? 500, parsed));
            resolve(parsed as T);
          });
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.socketError(err)));
      req.end(payload);
    });
  }

  /** Streams NDJSON lines (events --follow) until the registrar closes the stream. */
  stream(path: string, onLine: (v: unknown) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = http.request({ ...this.endpoint(), path, method: 'GET' }, (res) => {
        let buf = '';
        res.setEncoding('utf8');
        if ((res.statusCode ?? 500) >= 400) {
          res.on('data', (c: string) => (buf += c));
          res.on('end', () => {
            let parsed: unknown;
            try {
              parsed = JSON.parse(buf);
            } catch {
              parsed = undefined;
            }
            reject(adminError(res.statusCode ?? 500, parsed));
          });
          return;
        }
        res.on('data', (c: string) => {
          buf += c;
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (!line) continue;
            try {
              onLine(JSON.parse(line));
            } catch (err) {
              req.destroy();
              return reject(
                err instanceof SyntaxError
                  ? new MusterError('MUSTER_ERR_ADMIN_REPLY', 'the registrar sent a malformed event line')
                  : err,
              );
            }
          }
        });
        res.on('end', resolve);
        res.on('error', (err) => reject(this.socketError(err)));
      });
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.socketError(err)));
      req.end();
    });
  }

  private socketError(err: NodeJS.ErrnoException): MusterError {
    const why =
      err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
        ? 'is the registrar running? (pass --admin-socket if it uses another path)'
        : err.code === 'EACCES'
          ? 'permission denied: run as the registrar user (root)'
          : err.message;
    return new MusterError(
      'MUSTER_ERR_ADMIN_SOCKET',
      `cannot reach the registrar at ${this.socketPath}: ${why}`,
    );
  }
}
