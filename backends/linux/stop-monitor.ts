// Stopping a launcher monitor that should end what it runs: SIGTERM (the
// monitor SIGKILLs its sandbox's init, or a held one, and reports), then
// SIGKILL if it does not answer (PDEATHSIG takes the init with it). Shared by
// the Linux sandbox and the unsandboxed backend's PID-namespace mode.

/** How long a monitor told to stop gets before it is SIGKILLed. */
export const MONITOR_KILL_GRACE_MS = 5000;

/** The part of a launcher process this needs (spawn.ts's LauncherProcess has it). */
export interface StoppableMonitor {
  alive(): boolean;
  kill(sig: 'SIGTERM' | 'SIGKILL'): void;
  exited: Promise<unknown>;
}

/** Resolves when the monitor has exited (at once if it had). */
export async function stopMonitor(proc: StoppableMonitor): Promise<void> {
  if (!proc.alive()) return;
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), MONITOR_KILL_GRACE_MS);
  await proc.exited;
  clearTimeout(timer);
}

/** A monitor whose builder never ran (held, then abandoned or failed): its log drained, stopped, its report read. */
export async function stopHeldMonitor(proc: StoppableMonitor & { log?: { resume(): unknown } | null; result: Promise<unknown> }): Promise<void> {
  proc.log?.resume();
  await stopMonitor(proc); // "K": the monitor SIGKILLs the held init
  await proc.result;
}
