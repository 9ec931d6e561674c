// A build whose builder could not be executed (missing, not executable, bad
// interpreter). Nix treats that as the builder failing: the message goes to
// the log and the builder "failed with exit code 1" (exit status 100), not
// as an error setting up the build.
import { Readable } from 'node:stream';
import type { ExitStatus, ResourceUsage, RunningBuild } from '../backend.js';

export class ExecFailedBuild implements RunningBuild {
  readonly pid = 0;
  readonly log: Readable;
  constructor(message: string) {
    this.log = Readable.from([Buffer.from(`error: ${message}\n`, 'utf8')]);
  }
  wait(): Promise<ExitStatus> {
    return Promise.resolve({ code: 1, signal: null });
  }
  kill(): Promise<void> {
    return Promise.resolve();
  }
  usage(): ResourceUsage | null {
    return null;
  }
}
