// Assembles the whole profile text from the static fragments and the decided
// per-build path lists. Pure given the fragments; the decisions (which paths,
// literal or subpath) are made in plan.ts.
//
// Order matters, because the last matching rule wins:
//   (version 1)  (deny default …)            header
//   sandbox-defaults.sb                        fixed policy
//   sandbox-network.sb                         fixed-output builds only
//   outputs, inputs, ancestry allow groups     generated
//   __sandboxProfile                           relaxed mode only
//   sandbox-final.sb                           denials that must win
import { fragment } from './fragments.js';
import { allowGroups, SBPL_GROUP_BUDGET, type AllowGroup, type PathFilter } from './sbpl.js';

/** Operations granted on outputs and inputs. Inputs need file-write* too: without it access(W_OK) fails with EPERM instead of EACCES. */
export const RW_EXEC_OPS = 'file-read* file-write* process-exec';
export const READ_OPS = 'file-read*';

export interface ProfileInput {
  sandboxed: boolean;
  logViolations: boolean;
  /** Fixed-output: add the network fragment. */
  network: boolean;
  /** Scratch output paths (subpath each). */
  outputs: string[];
  /** Input closure, sandbox-paths, impure host deps. */
  allowed: PathFilter[];
  /** Parent directories (literal read each). */
  ancestry: string[];
  /** __sandboxProfile text (already vetted by the planner). */
  extra: string;
  /** Bytes of filters per allow group. */
  groupBudget?: number;
}

export interface AssembledProfile {
  text: string;
  groups: AllowGroup[];
}

export function assembleProfile(input: ProfileInput): AssembledProfile {
  if (!input.sandboxed) return { text: '(version 1)\n' + fragment('minimal'), groups: [] };
  const budget = input.groupBudget ?? SBPL_GROUP_BUDGET;
  const parts: string[] = ['(version 1)\n'];
  // Denials go to the system log only when asked: a build probing for files
  // would otherwise flood it.
  parts.push(input.logViolations ? '(deny default)\n' : '(deny default (with no-log))\n');
  parts.push('\n', fragment('defaults'));
  if (input.network) parts.push('\n', fragment('network'));

  const outputs = allowGroups(RW_EXEC_OPS, input.outputs.map((path) => ({ kind: 'subpath', path })), budget, 'output path');
  const allowed = allowGroups(RW_EXEC_OPS, input.allowed, budget, 'allowed path');
  const ancestry = allowGroups(READ_OPS, input.ancestry.map((path) => ({ kind: 'literal', path })), budget, 'parent directory');
  if (outputs.length) parts.push('\n; Outputs, at their scratch paths.\n', ...outputs.map((g) => g.text));
  if (allowed.length) parts.push('\n; Inputs: the input closure, sandbox-paths and allowed impure host deps.\n', ...allowed.map((g) => g.text));
  if (ancestry.length) parts.push('\n; Every parent of an allowed path: realpath() and getcwd() stat them.\n', ...ancestry.map((g) => g.text));

  if (input.extra !== '') {
    parts.push('\n; __sandboxProfile of the derivation (sandbox = relaxed).\n', input.extra);
    if (!input.extra.endsWith('\n')) parts.push('\n');
  }
  parts.push('\n', fragment('final'));
  return { text: parts.join(''), groups: [...outputs, ...allowed, ...ancestry] };
}
