// Runs one build through the Linux backend and prints the result as JSON.
// The security battery executes it as the unprivileged test user (runuser),
// so the attempt goes through exactly the code path a rootless drvbox uses.
//   stdin: { request: BuildRequest, killAfterMs?: number }
//   stdout: { code, signal, log, outPath, monitorPid, sandboxPid }
import { readFileSync } from 'node:fs';
import type { BuildRequest } from '../../backends/backend.js';
import { runBuild } from '../backends/linux/fixture.js';

interface Job {
  request: BuildRequest;
  killAfterMs?: number;
}

const job = JSON.parse(readFileSync(0, 'utf8')) as Job;
let monitorPid = 0;
let sandboxPid = 0;
try {
  const r = await runBuild(job.request, (b) => {
    monitorPid = b.pid;
    sandboxPid = b.sandboxPid;
    if (job.killAfterMs !== undefined) setTimeout(() => void b.kill(), job.killAfterMs);
  });
  process.stdout.write(JSON.stringify({ code: r.code, signal: r.signal, log: r.log, outPath: r.outPath, monitorPid, sandboxPid }));
} catch (e) {
  process.stdout.write(JSON.stringify({ error: (e as Error).message, code: null, signal: null, log: '', outPath: '', monitorPid, sandboxPid }));
}
