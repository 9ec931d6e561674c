// The unsandboxed backend's plan: pure data saying how the builder runs.
//
// The builder sees the host as it is; only its process tree is contained:
//   pid-namespace  (Linux) it runs in a new PID namespace, started by the
//                  Linux launcher in its minimal mode (no mounts, no pivot;
//                  a user namespace mapping our own uid/gid to themselves
//                  when not root) under a minimal init (reaper mode): the
//                  builder is pid 2, so its own fatal signals work as on the
//                  host (`kill -9 $$`). When the builder exits or is killed,
//                  the init kills every process it left, including ones that
//                  setsid()ed away; PR_SET_PDEATHSIG takes the whole tree
//                  down when drvbox itself dies (kill -9).
//   process-group  (macOS, or Linux without the launcher or namespaces) its
//                  own session and process group, killed as a group; a
//                  process that starts a new session escapes this.
import { basename } from 'node:path';
import type { BuildRequest, PlanHost, SandboxSpec } from '../backend.js';
import { compareUtf8 } from '../../src/format/derivation.js';

export type Containment = 'pid-namespace' | 'process-group';

export interface NoneSandboxSpec extends SandboxSpec {
  backend: 'none';
  builder: string;
  /** argv[0] is the builder's base name, as Nix passes it. */
  argv: string[];
  /** The builder's environment in byte order of the names. */
  env: [string, string][];
  cwd: string;
  containment: Containment;
  /** pid-namespace when not root: a user namespace mapping uid/gid to themselves. */
  userNamespace: boolean;
  /** uid/gid are a build user's (root switches to it, dropping root's groups). */
  buildUser: boolean;
  uid: number;
  gid: number;
  /**
   * The build user's supplementary groups, which it keeps as in Nix (so an
   * admin can put build users in, say, `kvm`): with the launcher (PID
   * namespace) only; a process group gets none (Node's spawn drops them).
   */
  groups: number[];
  notes: string[];
}

export interface NonePlanOptions {
  /** Default: pid-namespace on Linux, process-group elsewhere. */
  containment?: Containment;
  uid?: number;
  gid?: number;
}

export function isNoneSpec(spec: SandboxSpec): spec is NoneSandboxSpec {
  return spec.backend === 'none';
}

export function planNone(req: BuildRequest, host: PlanHost, opts: NonePlanOptions = {}): NoneSandboxSpec {
  // A build user (root with build-users-group) runs the builder; else the caller.
  const uid = req.buildUser?.uid ?? opts.uid ?? process.getuid?.() ?? 0;
  const gid = req.buildUser?.gid ?? opts.gid ?? process.getgid?.() ?? 0;
  const containment = opts.containment ?? (host.platform === 'linux' ? 'pid-namespace' : 'process-group');
  const notes: string[] = [];
  if (req.storeDir !== req.realStoreDir) {
    notes.push(
      `the store's physical directory '${req.realStoreDir}' differs from '${req.storeDir}': without a sandbox the builder cannot see store paths at their logical names`,
    );
  }
  if (containment === 'process-group') {
    notes.push('a process that starts its own session (setsid) can outlive the build in this mode');
    if ((req.buildUser?.supplementaryGids.length ?? 0) > 0) {
      notes.push(`the build user's supplementary groups (${req.buildUser!.supplementaryGids.join(', ')}) are not kept in this mode`);
    }
  }
  return {
    backend: 'none',
    request: req,
    builder: req.builder,
    argv: [basename(req.builder), ...req.args],
    env: Object.entries(req.env).sort((a, b) => compareUtf8(a[0], b[0])),
    cwd: req.buildDirHost,
    containment,
    userNamespace: containment === 'pid-namespace' && req.buildUser === null && uid !== 0,
    buildUser: req.buildUser !== null,
    uid,
    gid,
    groups: containment === 'pid-namespace' ? [...(req.buildUser?.supplementaryGids ?? [])] : [],
    notes,
  };
}

export function explainNone(spec: NoneSandboxSpec): string {
  const r = spec.request;
  const out: string[] = [];
  out.push(`no sandbox for ${r.drvPath} (${r.system}): the builder sees the host file system and network`);
  if (spec.containment === 'pid-namespace') {
    out.push(
      'containment: PID namespace (a minimal init runs the builder and reaps; when the builder exits or is killed, every process it started dies; ' +
        'PR_SET_PDEATHSIG kills it when drvbox dies)',
    );
    const groups = spec.groups.length > 0 ? `its supplementary groups ${spec.groups.join(', ')}` : 'no supplementary groups';
    if (spec.userNamespace) out.push(`identity: uid ${spec.uid} gid ${spec.gid}, mapped to themselves in a user namespace`);
    else if (spec.buildUser) out.push(`identity: build user uid ${spec.uid} gid ${spec.gid}, ${groups} (none of root's)`);
    else out.push(`identity: uid ${spec.uid} gid ${spec.gid}`);
  } else {
    out.push('containment: own session and process group, killed as a group');
    out.push(`identity: uid ${spec.uid} gid ${spec.gid}`);
  }
  out.push(`working directory: ${spec.cwd}`);
  out.push(`builder: ${spec.builder}`);
  out.push(`argv: ${JSON.stringify(spec.argv)}`);
  out.push(`environment (${spec.env.length} variables, in this order):`);
  for (const [k, v] of spec.env) out.push(`  ${k}=${v.length > 200 ? v.slice(0, 200) + `… (${v.length} chars)` : v}`);
  out.push('outputs:');
  for (const [name, p] of Object.entries(r.scratchOutputs)) out.push(`  ${name}: ${p}`);
  for (const n of spec.notes) out.push(`note: ${n}`);
  return out.join('\n') + '\n';
}
