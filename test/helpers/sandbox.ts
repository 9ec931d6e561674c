// Tests that need the Linux namespace sandbox call requireSandbox() first.
// Where the sandbox is unavailable they FAIL (never skip, never pass through
// sandbox-fallback's unsandboxed builds), naming the failing probe step and
// its fix; with CI=true the message says that CI must provide it.
import { HostPreconditionError, requireLinux } from './host.js';

let probed: Promise<string | null> | null = null;

/** Why the sandbox cannot be used here, or null when it can. */
export function sandboxProblem(): Promise<string | null> {
  probed ??= (async () => {
    if (process.platform !== 'linux') return `not Linux (${process.platform})`;
    const { linuxBackend } = await import('../../backends/linux/index.js');
    const r = await linuxBackend.probe();
    if (r.usable && r.checks.every((c) => c.ok || c.name === 'cgroups')) return null;
    const bad = r.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}${c.fix ? ` (fix: ${c.fix})` : ''}`);
    return bad.join('; ') || 'the probe failed';
  })();
  return probed;
}

export async function requireSandbox(why: string): Promise<void> {
  requireLinux(why);
  const problem = await sandboxProblem();
  if (problem === null) return;
  const ci = process.env.CI === 'true' || process.env.CI === '1';
  throw new HostPreconditionError(
    `cannot run on this host: needs the Linux namespace sandbox (${why}), which is unavailable: ${problem}` +
      (ci ? ' [CI=true: the CI runner must allow user namespaces; this test fails rather than skipping]' : ''),
  );
}
