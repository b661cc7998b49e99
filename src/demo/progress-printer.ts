/** Where the demo writes: standard output, and whether it is a terminal. */
export interface DemoOutput {
  write(text: string): void;
  isTTY: boolean;
  /** Terminal width, to keep a redrawn line on one row. */
  columns?: number;
}

/**
 * Plain output with one live progress line. On a terminal the live line is redrawn in place; elsewhere
 * (a pipe, CI, a test) it is printed as a new line only when it changes, at most once per `throttleMs`
 * unless the change is a milestone (a new wave, a new phase), so logs stay short.
 */
export class ProgressPrinter {
  private shown = '';
  private lastKey = '';
  private lastPrintedAt = -Infinity;
  private pending: { text: string; key: string } | null = null;

  constructor(
    private readonly out: DemoOutput,
    private readonly throttleMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  /** A permanent line. */
  line(text = ''): void {
    if (this.out.isTTY && this.shown) {
      this.out.write(`\r\x1b[K${text}\n${this.fit(this.shown)}`);
      return;
    }
    this.flushPending();
    this.out.write(`${text}\n`);
  }

  /**
   * Shows the current progress. `key` is what counts as a change for non-terminal output (e.g. the
   * text without a countdown); `milestone` prints it at once (on a terminal: keeps the previous line
   * and starts a new one); `terminalOnly` shows it on a terminal only
   * (when other lines already tell the story).
   */
  live(text: string, options: { key?: string; milestone?: boolean; terminalOnly?: boolean } = {}): void {
    const key = options.key ?? text;
    if (this.out.isTTY) {
      // A milestone keeps the line as it stood at the end of the previous phase, and starts a new one.
      if (options.milestone && this.shown) {
        this.out.write('\n');
        this.shown = '';
      }
      if (text !== this.shown) this.out.write(`\r\x1b[K${this.fit(text)}`);
      this.shown = text;
      return;
    }
    if (options.terminalOnly) return;
    if (key === this.lastKey) {
      this.pending = null;
      return;
    }
    if (options.milestone || this.now() - this.lastPrintedAt >= this.throttleMs) this.print(text, key);
    else this.pending = { text, key };
  }

  /** Ends the live line: it stays on screen as printed last, and the next output starts below it. */
  settle(): void {
    if (this.out.isTTY) {
      if (this.shown) this.out.write('\n');
      this.shown = '';
      return;
    }
    this.flushPending();
    this.lastKey = '';
  }

  private flushPending(): void {
    if (this.pending) this.print(this.pending.text, this.pending.key);
  }

  private print(text: string, key: string): void {
    this.out.write(`${text}\n`);
    this.lastKey = key;
    this.lastPrintedAt = this.now();
    this.pending = null;
  }

  private fit(text: string): string {
    const columns = this.out.columns ?? 0;
    return columns > 1 && text.length >= columns ? `${text.slice(0, columns - 2)}…` : text;
  }
}
