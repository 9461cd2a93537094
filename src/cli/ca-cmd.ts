/**
 * `muster ca`: the registrar's CA fingerprint, and exactly how to pin it on a node (README "Pinning
 * the CA"). From the local registrar's admin socket (trusted: the socket is the registrar's), or with
 * --url from any registrar's HTTPS API, unverified: that form is for comparing out of band.
 */
import type { WireStatus } from '../admin/client.js';
import { fingerprintHex } from '../common/config.js';
import { MusterError } from '../common/errors.js';
import { command } from './command.js';
import { out, printJson } from './output.js';

interface CaInfo {
  /** The pin: SHA-256 of the CA certificate, base64url (`--ca-fingerprint`). */
  ca: string;
  /** The same, as `openssl x509 -noout -fingerprint -sha256` prints it. */
  sha256: string;
  registrar: string;
  cluster: string;
  /** Where it came from: the admin socket, or the URL (unverified). */
  source: string;
  verified: boolean;
}

/** GET over HTTPS without verifying the certificate (a first look, as with `curl -k`). */
async function fetchUnverified(url: URL, timeoutMs = 10_000): Promise<{ status: number; body: string }> {
  // Loaded here, not at start-up: TLS is for --url only (issue 12, CLI start-up).
  const { default: https } = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = https.get(url, { rejectUnauthorized: false, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
        if (body.length > 1_000_000) req.destroy(new Error('answer too large'));
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs / 1000}s`)));
    req.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        new MusterError('MUSTER_ERR_UNREACHABLE', `cannot reach ${url.origin}: ${err.code ?? err.message}`),
      ),
    );
  });
}

async function fromUrl(base: string): Promise<CaInfo> {
  const info = await fetchUnverified(new URL('/v1/info', base));
  let parsed: Partial<WireStatus> = {};
  try {
    parsed = JSON.parse(info.body) as Partial<WireStatus>;
  } catch {
    // checked below
  }
  if (info.status !== 200 || typeof parsed.ca !== 'string') {
    throw new MusterError(
      'MUSTER_ERR_UNREACHABLE',
      `${base} is not a muster registrar (GET /v1/info answered ${info.status})`,
    );
  }
  // The fingerprint printed is computed here from the CA certificate the registrar serves, and must
  // match what it says in /v1/info.
  const chain = await fetchUnverified(new URL('/v1/ca', base));
  const pems = chain.body.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const { certFingerprint } = await import('../common/x509.js');
  const fps = pems.map((p) => certFingerprint(p));
  if (!fps.includes(parsed.ca)) {
    throw new MusterError(
      'MUSTER_ERR_CA_PIN',
      `${base} announces CA ${parsed.ca} but serves another CA certificate: do not pin it`,
    );
  }
  return {
    ca: parsed.ca,
    sha256: fingerprintHex(parsed.ca),
    registrar: String(parsed.id ?? ''),
    cluster: String(parsed.cluster ?? ''),
    source: base,
    verified: false,
  };
}

export const caCommand = command({
  name: 'ca',
  describe: "print the registrar's CA fingerprint and how to pin it on nodes",
  scopes: ['ca', 'admin', 'output'],
  examples: [
    ['$0 ca', 'on the registrar: the fingerprint, from the admin socket'],
    [
      '$0 ca --url https://10.0.0.1:8443',
      'from anywhere: what that registrar presents (compare it out of band)',
    ],
  ],
  async run(o) {
    let info: CaInfo;
    if (o.url) {
      info = await fromUrl(o.url);
    } else {
      const { AdminClient } = await import('../admin/client.js');
      const s = await new AdminClient(o['admin-socket']).request<WireStatus>('GET', '/v1/admin/status');
      info = {
        ca: s.ca,
        sha256: fingerprintHex(s.ca),
        registrar: s.id,
        cluster: s.cluster,
        source: o['admin-socket'],
        verified: true,
      };
    }
    if (o.json) return printJson(info);
    out(`CA fingerprint of registrar ${info.registrar} (cluster ${info.cluster}):\n\n  ${info.ca}\n\n`);
    if (!info.verified) {
      out(
        `Fetched from ${info.source} WITHOUT verification: compare it with \`muster ca\` on the registrar\nor with its log ("ca") before you pin it.\n\n`,
      );
    }
    out(
      [
        'Pin it on a node (any one of):',
        `  muster join --ca-fingerprint ${info.ca} ...`,
        `  MUSTER_CA_FINGERPRINT=${info.ca}          (e.g. in /etc/muster/muster.env)`,
        `  "join": { "caFingerprint": "${info.ca}" }   (in /etc/muster/muster.json)`,
        '',
        `openssl shows the same as: sha256 Fingerprint=${info.sha256}`,
        '(muster join --ca-fingerprint accepts that form too)',
        '',
      ].join('\n'),
    );
  },
});
