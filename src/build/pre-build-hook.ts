// The pre-build hook (setting `pre-build-hook`): a program run before a
// sandboxed build as `<hook> <drv path> [<sandbox root dir>]` that may add
// paths to the sandbox. Nix's protocol, on the hook's stdout, in lines:
//
//   extra-sandbox-paths          (or the old spelling extra-chroot-dirs)
//   <target>=<source>            one path per line; a line without '=' is
//   <path>                       both target and source
//   <empty line>                 ends the block; more blocks may follow
//
// Any other line outside a block is an error; so is the hook failing. A
// last line without its newline is ignored (as in Nix). The paths are
// mandatory (no `?` suffix handling here, as in Nix).
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import type { SandboxPathMapping } from '../../backends/backend.js';
import { PreBuildHookFailed, PreBuildHookUnknownCommand } from './errors-register.js';

const BLOCK_STARTS = new Set(['extra-sandbox-paths', 'extra-chroot-dirs']);

/** The sandbox paths a hook's output asks for, in order (a later target overrides an earlier one). */
export function parsePreBuildHookOutput(output: string, hook = 'pre-build-hook'): SandboxPathMapping[] {
  const res: SandboxPathMapping[] = [];
  let inBlock = false;
  const lines = output.split('\n');
  lines.pop(); // the text after the last newline is not a complete line
  for (const line of lines) {
    if (!inBlock) {
      if (!BLOCK_STARTS.has(line)) {
        throw new PreBuildHookUnknownCommand(`unknown pre-build hook command '${line}'`, { hook, line });
      }
      inBlock = true;
    } else if (line === '') {
      inBlock = false;
    } else {
      const eq = line.indexOf('=');
      if (eq < 0) res.push({ target: line, source: line, optional: false });
      else res.push({ target: line.slice(0, eq), source: line.slice(eq + 1), optional: false });
    }
  }
  return res;
}

export interface PreBuildHookOptions {
  hook: string;
  drvPath: string;
  /** The sandbox's root directory, passed as the second argument when there is one. */
  sandboxRoot?: string | null;
  /** Lines the hook writes to stderr. */
  log?(line: string): void;
  /** Stop reading after this many bytes of stdout (default 16 MiB). */
  maxOutput?: number;
}

/** Runs the hook and parses its answer. Nix runs it only for sandboxed builds; so should the caller. */
export async function runPreBuildHook(o: PreBuildHookOptions): Promise<SandboxPathMapping[]> {
  // Nix execs the setting as a path, without a PATH lookup.
  const program = o.hook.includes('/') ? o.hook : resolve(o.hook);
  const args = o.sandboxRoot ? [o.drvPath, o.sandboxRoot] : [o.drvPath];
  const max = o.maxOutput ?? 16 << 20;
  let tooBig = false;
  const { code, signal, stdout, error } = await new Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    error: Error | null;
  }>((done) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d: Buffer) => {
      size += d.length;
      if (size > max) {
        tooBig = true;
        child.kill('SIGKILL');
        return;
      }
      chunks.push(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      for (const line of d.toString('utf8').split('\n')) if (line !== '') o.log?.(line);
    });
    child.once('error', (e) => done({ code: null, signal: null, stdout: '', error: e }));
    child.once('close', (c, s) => done({ code: c, signal: s, stdout: Buffer.concat(chunks).toString('utf8'), error: null }));
  });
  if (error) {
    throw new PreBuildHookFailed(`cannot run pre-build hook '${o.hook}': ${error.message}`, { hook: o.hook });
  }
  if (tooBig) {
    throw new PreBuildHookFailed(`pre-build hook '${o.hook}' wrote more than ${max} bytes`, { hook: o.hook });
  }
  if (code !== 0) {
    const how = signal ? `failed due to signal ${signal}` : `failed with exit code ${code}`;
    throw new PreBuildHookFailed(`program '${o.hook}' ${how}`, { hook: o.hook, exitCode: code, signal });
  }
  return parsePreBuildHookOutput(stdout, o.hook);
}
