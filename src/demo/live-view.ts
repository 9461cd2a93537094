/**
 * The live view of the LAN demo: one line per node, redrawn in place on a terminal (ANSI cursor
 * movement, under the lines already printed), or plain appended lines when stdout is a pipe or file.
 * It knows nothing of muster: the demo feeds it rows and log lines.
 */

export type Style = 'plain' | 'bold' | 'dim' | 'green' | 'yellow' | 'red' | 'cyan';
/** A piece of a line: text and how to show it on a terminal. */
export type Seg = [text: string, style?: Style];

const SGR: Record<Style, string> = {
  plain: '',
  bold: '\x1b[1m',
  dim: '\x1b[2m',
  green: '\x1b[32m',
  yellow: '\x1b[33m',
  red: '\x1b[31m',
  cyan: '\x1b[36m',
};

/** Renders segments; on a terminal with colour, cut to `width` visible characters so no line wraps. */
export function paint(segs: Seg[], color: boolean, width = Infinity): string {
  let left = width;
  let s = '';
  for (const [text, style = 'plain'] of segs) {
    if (left <= 0) break;
    const t = [...text].length > left ? [...text].slice(0, Math.max(0, left - 1)).join('') + '…' : text;
    left -= [...t].length;
    s += color && style !== 'plain' ? `${SGR[style]}${t}\x1b[0m` : t;
  }
  return s;
}

export interface LiveViewOptions {
  out: NodeJS.WriteStream;
  /** Redraw in place (a terminal) or append (anything else). */
  tty: boolean;
  /** The block's lines, asked for at every redraw. */
  rows: () => Seg[][];
  /** Redraw period on a terminal (a spinner and ticking clocks). */
  tickMs?: number;
}

export class LiveView {
  private drawn = 0;
  private timer: NodeJS.Timeout | undefined;
  private active = false;

  constructor(private readonly o: LiveViewOptions) {}

  get tty(): boolean {
    return this.o.tty;
  }

  /** Shows the block (terminal only) and keeps it fresh until stop(). */
  start(): void {
    if (this.active) return;
    this.active = true;
    if (!this.o.tty) return;
    this.o.out.write('\x1b[?25l'); // hide the cursor while redrawing
    this.draw();
    this.timer = setInterval(() => this.draw(), this.o.tickMs ?? 100);
    this.timer.unref();
  }

  /** A line above the block (a terminal), or just a line (anything else). */
  log(segs: Seg[]): void {
    const line = paint(segs, this.o.tty, this.width());
    if (!this.o.tty || !this.active) {
      this.o.out.write(paint(segs, this.o.tty) + '\n');
      return;
    }
    this.o.out.write(this.up() + '\x1b[J' + line + '\n');
    this.drawn = 0;
    this.draw();
  }

  /** Draws the block a last time and leaves it where it is. Safe to call twice. */
  stop(): void {
    if (!this.active) return;
    this.active = false;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (!this.o.tty) return;
    this.draw();
    this.o.out.write('\x1b[?25h');
  }

  private width(): number {
    return Math.max(40, (this.o.out.columns || 100) - 1);
  }

  private up(): string {
    return this.drawn > 0 ? `\x1b[${this.drawn}A\r` : '\r';
  }

  private draw(): void {
    const lines = this.o.rows().map((r) => paint(r, true, this.width()));
    // Up to the block's first line, rewrite each line, clear whatever a longer block left below.
    this.o.out.write(this.up() + lines.map((l) => '\x1b[2K' + l + '\n').join('') + '\x1b[J');
    this.drawn = lines.length;
  }
}
