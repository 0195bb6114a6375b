// Command line of `npm run bench`.
import { parseArgs } from 'node:util';

export interface BenchOptions {
  /** Apply/undo cycles per freeze target. */
  cycles: number;
  /** Apply/undo cycles of the soak (0: no soak). */
  soak: number;
  /** Request rate of the soak's load client, per second. */
  rate: number;
  /** createUpdate runs of the demo, for its median time. */
  createRuns: number;
  /** Timed rounds per phase of the call-overhead measurement. */
  callRounds: number;
  /** Run the kernel part (it boots QEMU); false with --no-kernel. */
  kernel: boolean;
  /** Run only the kernel part (--kernel-only). */
  kernelOnly: boolean;
  /** createKernelUpdate runs per kernel patch, for the median create time. */
  kernelRuns: number;
  /** Apply/undo cycles per kernel update in the guest. */
  kernelCycles: number;
  json: boolean;
  quick: boolean;
}

export const USAGE = `usage: npm run bench -- [--quick] [--cycles N] [--soak N] [--rate N]
                         [--no-kernel | --kernel-only] [--kernel-runs N] [--kernel-cycles N] [--json]
  --quick            a short run (10 cycles per target, 50 soak cycles, 1 kernel create run, 2 kernel cycles)
  --cycles N         apply/undo cycles per freeze target (default 50; each gives two freezes)
  --soak N           apply/undo cycles of the soak against echod under load (default 1000; 0 skips it)
  --rate N           requests per second of the soak's load client (default 400)
  --no-kernel        skip the kernel part (it needs QEMU, and ~500 MB of downloads on its first run)
  --kernel-only      run only the kernel part
  --kernel-runs N    createKernelUpdate runs per kernel patch (default 3)
  --kernel-cycles N  apply/undo cycles per kernel update in the QEMU guest (default 3)
  --json             print the results as JSON instead of the table`;

export function parseOptions(argv: string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      cycles: { type: 'string' },
      soak: { type: 'string' },
      rate: { type: 'string' },
      'no-kernel': { type: 'boolean', default: false },
      'kernel-only': { type: 'boolean', default: false },
      'kernel-runs': { type: 'string' },
      'kernel-cycles': { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const quick = values.quick ?? false;
  const noKernel = values['no-kernel'] ?? false;
  const kernelOnly = values['kernel-only'] ?? false;
  if (noKernel && kernelOnly) throw new Error('--no-kernel and --kernel-only leave nothing to run: give one of them');
  return {
    cycles: count('--cycles', values.cycles, quick ? 10 : 50, 1),
    soak: count('--soak', values.soak, quick ? 50 : 1000, 0),
    rate: count('--rate', values.rate, 400, 1),
    createRuns: quick ? 1 : 5,
    callRounds: quick ? 8 : 25,
    kernel: !noKernel,
    kernelOnly,
    kernelRuns: count('--kernel-runs', values['kernel-runs'], quick ? 1 : 3, 1),
    kernelCycles: count('--kernel-cycles', values['kernel-cycles'], quick ? 2 : 3, 1),
    json: values.json ?? false,
    quick,
  };
}

function count(flag: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag} takes a whole number of at least ${min}, not "${text}"`);
  return n;
}
