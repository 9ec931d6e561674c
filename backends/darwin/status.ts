// wait(2) status words and Darwin's signal numbers (which differ from
// Linux's, so os.constants on the machine running `explain` cannot be used).
import { constants as osConstants } from 'node:os';
import type { ExitStatus } from '../backend.js';

export const DARWIN_SIGNALS: Record<number, NodeJS.Signals> = {
  1: 'SIGHUP',
  2: 'SIGINT',
  3: 'SIGQUIT',
  4: 'SIGILL',
  5: 'SIGTRAP',
  6: 'SIGABRT',
  7: 'SIGEMT' as NodeJS.Signals,
  8: 'SIGFPE',
  9: 'SIGKILL',
  10: 'SIGBUS',
  11: 'SIGSEGV',
  12: 'SIGSYS',
  13: 'SIGPIPE',
  14: 'SIGALRM',
  15: 'SIGTERM',
  16: 'SIGURG',
  17: 'SIGSTOP',
  18: 'SIGTSTP',
  19: 'SIGCONT',
  20: 'SIGCHLD',
  21: 'SIGTTIN',
  22: 'SIGTTOU',
  23: 'SIGIO',
  24: 'SIGXCPU',
  25: 'SIGXFSZ',
  26: 'SIGVTALRM',
  27: 'SIGPROF',
  28: 'SIGWINCH',
  29: 'SIGINFO',
  30: 'SIGUSR1',
  31: 'SIGUSR2',
};

/** WIFEXITED / WEXITSTATUS / WIFSIGNALED / WTERMSIG, as on every BSD and Linux. */
export function decodeWaitStatus(status: number, signalNames: Record<number, NodeJS.Signals> = DARWIN_SIGNALS): ExitStatus {
  const low = status & 0x7f;
  if (low === 0) return { code: (status >> 8) & 0xff, signal: null };
  if (low !== 0x7f) return { code: null, signal: signalNames[low] ?? (`SIG${low}` as NodeJS.Signals) };
  // Stopped: only reported with WUNTRACED, which drvbox never asks for.
  return { code: null, signal: signalNames[(status >> 8) & 0xff] ?? null };
}

/** Signal names by number for the OS drvbox runs on (Darwin's table, or os.constants elsewhere). */
export function hostSignalNames(os: 'darwin' | 'linux'): Record<number, NodeJS.Signals> {
  if (os === 'darwin') return DARWIN_SIGNALS;
  const out: Record<number, NodeJS.Signals> = {};
  for (const [name, num] of Object.entries(osConstants.signals)) if (out[num] === undefined) out[num] = name as NodeJS.Signals;
  return out;
}
