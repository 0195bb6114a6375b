// Progress lines for long steps (builds, matching) on a terminal.
//
// Only a person watching a terminal wants a spinner: when stderr is not a TTY
// (logs, pipes, CI) or output is for machines (--json), nothing is written, so
// progress never mixes with what a command prints.

/** Where progress goes: a stream that may be a terminal. */
export interface ProgressStream {
  isTTY?: boolean;
  write(text: string): unknown;
}

export interface Progress {
  /** Start a step; a step still running is marked done first. */
  step(text: string): void;
  /** A short detail for the running step (e.g. the file being compiled). */
  detail(text: string): void;
  /** Mark the running step done, optionally with a final text. */
  done(text?: string): void;
  /** Mark the running step failed. */
  fail(text?: string): void;
}

export interface ProgressOptions {
  /** No output at all (--json). */
  quiet?: boolean;
  /** Default: process.stderr. */
  stream?: ProgressStream;
  /** Spinner frame interval in ms. */
  intervalMs?: number;
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const CLEAR_LINE = '\r\x1b[2K';

/** A reporter that writes nothing. */
export const silentProgress: Progress = {
  step() {},
  detail() {},
  done() {},
  fail() {},
};

class TerminalProgress implements Progress {
  private text: string | undefined;
  private detailText = '';
  private started = 0;
  private frame = 0;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly stream: ProgressStream,
    private readonly intervalMs: number,
  ) {}

  step(text: string): void {
    if (this.text !== undefined) this.finish('✓');
    this.text = text;
    this.detailText = '';
    this.started = Date.now();
    this.frame = 0;
    this.render();
    this.timer = setInterval(() => this.render(), this.intervalMs);
    // A spinner must never keep the process alive.
    this.timer.unref?.();
  }

  detail(text: string): void {
    if (this.text === undefined) return;
    // One terminal line: a long detail (a compile command) is cut.
    this.detailText = text.replace(/\s+/g, ' ').slice(0, 60);
  }

  done(text?: string): void {
    if (this.text === undefined) return;
    if (text !== undefined) this.text = text;
    this.finish('✓');
  }

  fail(text?: string): void {
    if (this.text === undefined) return;
    if (text !== undefined) this.text = text;
    this.finish('✗');
  }

  private render(): void {
    const frame = FRAMES[this.frame++ % FRAMES.length];
    const detail = this.detailText ? `  ${this.detailText}` : '';
    this.stream.write(`${CLEAR_LINE}${frame} ${this.text}${detail}`);
  }

  private finish(mark: string): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const seconds = ((Date.now() - this.started) / 1000).toFixed(1);
    this.stream.write(`${CLEAR_LINE}${mark} ${this.text} (${seconds}s)\n`);
    this.text = undefined;
  }
}

/** A progress reporter: spinner lines on a TTY, silent otherwise or when quiet. */
export function createProgress(options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr;
  if (options.quiet || !stream.isTTY) return silentProgress;
  return new TerminalProgress(stream, options.intervalMs ?? 100);
}
