/**
 * Who is at the other end of an admin-socket connection (issue 10, item 3): the approver's identity
 * comes from the kernel, never from the request body. Linux records the credentials of a Unix socket
 * peer when it connects (SO_PEERCRED, unix(7)); the operator CLI's claimed `operator` field is kept
 * for old clients and ignored for identity.
 *
 * Node has no API for SO_PEERCRED, and a native addon is not worth it for one getsockopt: the
 * connection's descriptor is handed to a short perl process (perl-base is Essential in Debian, so
 * always present) as its fd 3, which reads the credentials and the user name (getpwuid: NSS, so LDAP
 * and other directory users resolve too). It runs once per connection, only when a request that
 * changes something needs the identity (about 5-45 ms), and the answer is cached on the socket.
 * If perl cannot tell, the identity says `uid unknown` and the registrar warns once.
 */
import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Logger } from '../common/log.js';

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
  /** The user name of uid ('' when it has none). */
  user: string;
}

const PERL = [
  '-MSocket',
  '-e',
  'open(my $s, "+<&=", 3) or die "fd: $!"; ' +
    'my $c = getsockopt($s, SOL_SOCKET, SO_PEERCRED) or die "getsockopt: $!"; ' +
    'my ($pid, $uid, $gid) = unpack("iII", $c); my $n = getpwuid($uid); ' +
    'print "$pid $uid $gid ", (defined $n ? $n : ""), "\\n"',
];
const TIMEOUT_MS = 5_000;

/** Parses perl's one line: `PID UID GID [NAME]`. */
export function parsePeerLine(line: string): PeerCredentials | undefined {
  const m = /^(-?\d+) (\d+) (\d+) ?(\S*)\n?$/.exec(line);
  if (!m) return undefined;
  return { pid: Number(m[1]), uid: Number(m[2]), gid: Number(m[3]), user: m[4] ?? '' };
}

/** The credentials of a Unix socket's peer, read through perl (see above). */
export function readPeerCredentials(socket: Socket): Promise<PeerCredentials> {
  // The descriptor as a number, not the Socket: handed a stream, child_process stops it reading (it
  // assumes the child takes it over), and the connection's next request would never be read.
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0)
    return Promise.reject(new Error('the connection has no file descriptor'));
  return new Promise((resolve, reject) => {
    const child = spawn('perl', PERL, {
      stdio: ['ignore', 'pipe', 'pipe', fd],
      timeout: TIMEOUT_MS,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' },
    });
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d.slice(0, 4096)));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d.slice(0, 4096)));
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const creds = code === 0 ? parsePeerLine(out) : undefined;
      if (creds) resolve(creds);
      else reject(new Error(`perl ${signal ?? `exit ${code}`}: ${(err || out).trim().slice(0, 200)}`));
    });
  });
}

/** `alice (uid 1000)`, or `uid 1001` for a uid with no user name. */
export function describePeer(c: PeerCredentials): string {
  return c.user ? `${c.user} (uid ${c.uid})` : `uid ${c.uid}`;
}

/**
 * The operator identity of admin connections, cached per connection. Over a TCP admin listener there
 * is no peer credential: the identity says where the request came from instead.
 */
export class PeerIdentity {
  private readonly cache = new WeakMap<object, Promise<string>>();
  private warned = false;

  constructor(
    private readonly log: Logger,
    private readonly read: (socket: Socket) => Promise<PeerCredentials> = readPeerCredentials,
  ) {}

  of(socket: Socket): Promise<string> {
    let id = this.cache.get(socket);
    if (!id) {
      id = this.resolve(socket);
      this.cache.set(socket, id);
    }
    return id;
  }

  private async resolve(socket: Socket): Promise<string> {
    // A Unix socket's peer has no address; a TCP one (or an in-process inject) has.
    if (socket.remoteAddress) return `admin-listen ${socket.remoteAddress}`;
    try {
      return describePeer(await this.read(socket));
    } catch (err) {
      if (!this.warned) {
        this.warned = true;
        this.log.warn(
          { err: (err as Error).message },
          'cannot read the admin connection peer credentials (SO_PEERCRED through perl): operators are recorded as "uid unknown"',
        );
      }
      return 'uid unknown';
    }
  }
}
