/** The operator CLI's client for the registrar's admin socket. */
import http from 'node:http';
import { MusterError } from '../common/errors.js';

export class AdminClient {
  constructor(readonly socketPath: string) {}

  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = http.request(
        {
          socketPath: this.socketPath,
          path,
          method,
          headers: payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {},
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              return reject(new MusterError('MUSTER_ERR_ADMIN_SOCKET', `the registrar answered with malformed JSON (${res.statusCode})`));
            }
            if ((res.statusCode ?? 500) >= 400) {
              const e = parsed as { error?: string; message?: string };
              return reject(new AdminError(e?.error ?? 'internal', e?.message ?? `HTTP ${res.statusCode}`, res.statusCode ?? 500));
            }
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
      const req = http.request({ socketPath: this.socketPath, path, method: 'GET' }, (res) => {
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          buf += c;
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (line) onLine(JSON.parse(line));
          }
        });
        res.on('end', resolve);
        res.on('error', reject);
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
    return new MusterError('MUSTER_ERR_ADMIN_SOCKET', `cannot reach the registrar at ${this.socketPath}: ${why}`);
  }
}

export class AdminError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}
