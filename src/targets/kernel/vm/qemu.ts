// The QEMU command line for a throwaway guest: software emulation (TCG; KVM is
// not reliable on the machines this runs on), no disk, no network, no display;
// the kernel console on a serial port, the command's output on virtio-serial
// ports, each connected to an abstract Unix socket the host listens on (Node's
// stdio "pipes" are socketpairs, which QEMU's file chardev cannot open by path;
// an abstract socket leaves no file behind, whatever happens to the host;
// tight=off because Node binds abstract names padded to the full sun_path).

import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { TspliceError } from '../../../errors.js';
import { GUEST_PORTS } from './guest-init.js';

export const QEMU_BINARY = 'qemu-system-x86_64';

/** The guest's output channels, each a Unix socket QEMU connects to. */
export type GuestChannel = 'console' | 'stdout' | 'stderr' | 'status';
export const GUEST_CHANNELS: readonly GuestChannel[] = ['console', 'stdout', 'stderr', 'status'];

/** Find an executable on PATH, or undefined. */
export function findOnPath(name: string, path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export function findQemu(): string {
  const qemu = findOnPath(QEMU_BINARY);
  if (!qemu) {
    throw new TspliceError(
      'bad_input',
      `${QEMU_BINARY} was not found on PATH: install it with "apt-get install qemu-system-x86" (or run scripts/kernel-deps.sh)`,
      { missing: QEMU_BINARY },
    );
  }
  return qemu;
}

export interface QemuOptions {
  vmlinuz: string;
  /** A path QEMU can open, such as /proc/self/fd/N for an inherited descriptor. */
  initrd: string;
  memoryMb: number;
  cpus: number;
  /** Extra kernel command-line words. */
  kernelArgs: string[];
  /** Abstract Unix socket names (without the leading NUL) the host listens on, one per channel. */
  sockets: Record<GuestChannel, string>;
}

export function qemuArguments(options: QemuOptions): string[] {
  const socket = (id: GuestChannel): string => `socket,id=${id},path=${options.sockets[id]},abstract=on,tight=off`;
  const append = ['console=ttyS0', 'panic=-1', 'quiet', ...options.kernelArgs].join(' ');
  return [
    '-accel', 'tcg',
    '-cpu', 'max',
    '-smp', String(options.cpus),
    '-m', `${options.memoryMb}M`,
    '-nodefaults',
    '-no-user-config',
    '-display', 'none',
    '-no-reboot',
    '-kernel', options.vmlinuz,
    '-initrd', options.initrd,
    '-append', append,
    '-chardev', socket('console'),
    '-serial', 'chardev:console',
    '-device', 'virtio-serial-pci,id=vser',
    ...port('stdout'),
    ...port('stderr'),
    ...port('status'),
  ];

  function port(id: 'stdout' | 'stderr' | 'status'): string[] {
    return ['-chardev', socket(id), '-device', `virtserialport,bus=vser.0,chardev=${id},name=${GUEST_PORTS[id]}`];
  }
}
