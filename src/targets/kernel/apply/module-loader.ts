// Loading and unloading kernel modules: the init_module and delete_module
// system calls through koffi, so no insmod/rmmod binary is needed and the
// module never touches the disk. Errors become TspliceErrors that say why
// (the kernel log usually has the detail: vermagic, unknown symbol, klp).

import koffi from 'koffi';
import { existsSync } from 'node:fs';
import { TspliceError } from '../../../errors.js';

const SYS_INIT_MODULE = 175;
const SYS_DELETE_MODULE = 176;
const O_NONBLOCK = 0o4000;

const EPERM = 1;
const ENOENT = 2;
const EAGAIN = 11;
const ENOMEM = 12;
const EBUSY = 16;
const EEXIST = 17;
const EINVAL = 22;
const ENOEXEC = 8;
const EKEYREJECTED = 129;

const libc = koffi.load('libc.so.6');
const syscall = libc.func('long syscall(long number, ...)');

function errnoName(errno: number): string {
  const names: Record<number, string> = {
    [EPERM]: 'EPERM', [ENOENT]: 'ENOENT', [EAGAIN]: 'EAGAIN', [ENOMEM]: 'ENOMEM', [EBUSY]: 'EBUSY', [EEXIST]: 'EEXIST',
    [EINVAL]: 'EINVAL', [ENOEXEC]: 'ENOEXEC', [EKEYREJECTED]: 'EKEYREJECTED',
  };
  return names[errno] ?? `errno ${errno}`;
}

/** Is a module of this name loaded (or still being unloaded)? */
export function moduleLoaded(name: string): boolean {
  return existsSync(`/sys/module/${name}/initstate`) || existsSync(`/sys/module/${name}/refcnt`);
}

/** Load a module from memory. Its init function runs before this returns (for livepatch: klp_enable_patch). */
export function loadModule(name: string, image: Buffer): void {
  const r = Number(syscall(SYS_INIT_MODULE, 'void *', image, 'unsigned long', image.length, 'const char *', ''));
  if (r === 0) return;
  const errno = koffi.errno();
  const hint = 'the kernel log (dmesg) tells more';
  switch (errno) {
    case EEXIST:
      throw new TspliceError('already_applied', `module ${name} is already loaded: the update is applied (tsplice list --kernel)`, { module: name });
    case EPERM:
      throw new TspliceError('permission',
        `the kernel refused to load ${name} (EPERM): run as root; module loading may be disabled (kernel.modules_disabled) or locked down (Secure Boot lockdown needs a signed module)`,
        { module: name });
    case EKEYREJECTED:
      throw new TspliceError('permission', `the kernel rejected the signature of ${name}: this kernel enforces module signatures; sign the livepatch module with a key it trusts`, { module: name });
    case ENOEXEC:
      throw new TspliceError('bad_input', `the kernel cannot load ${name} (ENOEXEC): it was built for another kernel (vermagic or module layout); ${hint}`, { module: name });
    case ENOMEM:
      throw new TspliceError('out_of_memory', `not enough kernel memory to load ${name}`, { module: name });
    case EBUSY:
      throw new TspliceError('code_busy', `the kernel is busy with another live patch transition and refused ${name}; wait for it to finish (cat /sys/kernel/livepatch/*/transition) and retry`, { module: name });
    default:
      throw new TspliceError('bad_input',
        `loading ${name} failed (${errnoName(errno)}): the livepatch module does not fit this kernel (a symbol or function it patches is missing?); ${hint}`,
        { module: name, errno });
  }
}

/**
 * Unload a module. Livepatch drops its reference a moment after the patch is
 * freed, so EAGAIN/EBUSY are retried until `timeoutMs`.
 */
export async function unloadModule(name: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = Number(syscall(SYS_DELETE_MODULE, 'const char *', name, 'unsigned int', O_NONBLOCK));
    if (r === 0) return;
    const errno = koffi.errno();
    if (errno === ENOENT) return;
    if ((errno === EAGAIN || errno === EBUSY) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      continue;
    }
    if (errno === EPERM) throw new TspliceError('permission', `not allowed to unload ${name}: run as root`, { module: name });
    throw new TspliceError('code_busy', `module ${name} could not be unloaded (${errnoName(errno)}): it is still in use; retry tsplice undo later`, { module: name, errno });
  }
}
