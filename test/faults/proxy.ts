/**
 * A TCP proxy between nodes and a registrar, on 127.0.0.1 only, that can be switched between faults
 * (issue 8 "Faults": the registrar unreachable, slow, resetting connections, restarting):
 * - `pass`: forwards both ways;
 * - `refuse`: not listening at all (connect gets ECONNREFUSED);
 * - `reset`: accepts, then resets the connection at once (ECONNRESET);
 * - `slow`: forwards, each chunk held back `delayMs` in each direction.
 * It counts the connections it accepts in each mode, with their times (the "no hot loop" evidence):
 * every attempt of a node that finds the registrar failing is a new connection.
 */
import net from 'node:net';

export type ProxyMode = 'pass' | 'refuse' | 'reset' | 'slow';

export class FaultProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private modeNow: ProxyMode = 'pass';
  /** Accepted connections: the mode at the time, and when (ms since epoch). */
  readonly connections: { mode: ProxyMode; at: number }[] = [];

  private constructor(
    readonly port: number,
    private upstreamPort: number,
    private readonly delayMs: number,
  ) {}

  static async start(upstreamPort: number, opts: { delayMs?: number } = {}): Promise<FaultProxy> {
    const probe = net.createServer();
    const port = await new Promise<number>((resolve) =>
      probe.listen(0, '127.0.0.1', () => resolve((probe.address() as net.AddressInfo).port)),
    );
    await new Promise((r) => probe.close(r));
    const p = new FaultProxy(port, upstreamPort, opts.delayMs ?? 150);
    await p.listen();
    return p;
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  get mode(): ProxyMode {
    return this.modeNow;
  }

  /** Where to forward (a restarted registrar may listen elsewhere). */
  setUpstream(port: number): void {
    this.upstreamPort = port;
  }

  /** Switches the fault; connections already open keep the mode they were accepted in. */
  async set(mode: ProxyMode): Promise<void> {
    if (mode === 'refuse' && this.server) {
      const s = this.server;
      this.server = undefined;
      await new Promise((r) => s.close(r));
    }
    if (mode !== 'refuse' && !this.server) await this.listen();
    this.modeNow = mode;
  }

  count(mode?: ProxyMode, since = 0): number {
    return this.connections.filter((c) => (mode === undefined || c.mode === mode) && c.at >= since).length;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise((r) => s.close(r));
  }

  private async listen(): Promise<void> {
    const server = net.createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
  }

  private accept(client: net.Socket): void {
    const mode = this.modeNow;
    this.connections.push({ mode, at: Date.now() });
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    client.on('error', () => {});
    if (mode === 'reset' || mode === 'refuse') {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(this.upstreamPort, '127.0.0.1');
    this.sockets.add(upstream);
    upstream.on('close', () => this.sockets.delete(upstream));
    // The registrar is gone (killed, restarting): the node sees its connection reset.
    upstream.on('error', () => client.resetAndDestroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    const pipe = (from: net.Socket, to: net.Socket): void => {
      from.on('data', (chunk: Buffer) => {
        if (mode !== 'slow') {
          to.write(chunk);
          return;
        }
        // Order is kept: every chunk waits the same time.
        from.pause();
        setTimeout(() => {
          if (!to.destroyed) to.write(chunk);
          from.resume();
        }, this.delayMs);
      });
      from.on('end', () => to.end());
    };
    pipe(client, upstream);
    pipe(upstream, client);
  }
}
