// Progress lines (downloads, boot) for a person watching a terminal; silent
// when stderr is not a TTY, so scripts and tests see only what they asked for.

/** Receives one short line of progress, e.g. "booting 6.1.0-50-cloud-amd64". */
export type ProgressSink = (message: string) => void;

/**
 * true: print to stderr; false: nothing; a function: call it; undefined: print
 * to stderr only when stderr is a terminal.
 */
export type ProgressOption = boolean | ProgressSink | undefined;

export function progressSink(option: ProgressOption, stream: NodeJS.WriteStream = process.stderr): ProgressSink | undefined {
  if (typeof option === 'function') return option;
  const enabled = option ?? stream.isTTY === true;
  if (!enabled) return undefined;
  return (message) => {
    stream.write(`tsplice vm: ${message}\n`);
  };
}
