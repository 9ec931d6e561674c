// `store verify`: the consistency of the database with the store directory,
// following Nix's verifyStore:
//   - a valid path missing on disk is unregistered when nothing valid refers
//     to it (Nix does so too), otherwise it is an error (--repair cannot
//     fetch it back: there are no substituters; it is reported);
//   - references must be valid paths (the schema's foreign keys guarantee
//     it; checked anyway, a hand-edited database may lack them);
//   - a content-addressed path must be named after its content address;
//   - with --check-contents: every NAR hash is recomputed (mismatches are
//     reported; --repair fills in missing sizes/hashes of old entries), and
//     every .links entry must match its name (--repair removes bad ones).
import { readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { formatHash, hashEquals } from '../format/hash.js';
import { parseContentAddress, pathMatchesContentAddress } from './content-address.js';
import type { LocalStore } from './local-store.js';
import { hashPath } from './nar-fs.js';
import { withGcLock } from './temp-roots.js';

export type ProblemKind =
  | 'missing'
  | 'missing-with-referrers'
  | 'hash-mismatch'
  | 'bad-reference'
  | 'ca-mismatch'
  | 'bad-link'
  | 'unreadable';

export interface VerifyProblem {
  kind: ProblemKind;
  path: string;
  message: string;
  /** What --repair did about it (null: nothing could be done / not asked). */
  repaired: string | null;
}

export interface VerifyOptions {
  checkContents?: boolean;
  repair?: boolean;
  /** Progress messages (stderr in the CLI). */
  log?: (msg: string) => void;
}

export interface VerifyResult {
  /** True when something is wrong that was not repaired. */
  errors: boolean;
  problems: VerifyProblem[];
  checked: number;
}

export async function verifyStore(store: LocalStore, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const log = opts.log ?? (() => {});
  const problems: VerifyProblem[] = [];
  let errors = false;
  const report = (p: VerifyProblem, isError: boolean) => {
    problems.push(p);
    if (isError) errors = true;
  };
  return withGcLock(store.layout, 'shared', async () => {
    log('reading the store...');
    const onDisk = new Set(readdirSync(store.realStoreDir));
    const valid = store.queryAllValidPaths();
    const present = new Set<string>();
    const done = new Set<string>();

    log('checking path existence...');
    const visit = (path: string): void => {
      if (done.has(path)) return;
      done.add(path);
      const base = path.slice(store.storeDir.length + 1);
      if (onDisk.has(base)) {
        present.add(path);
        return;
      }
      // Referrers first: if they can go, so can this path.
      let canInvalidate = true;
      for (const r of store.queryReferrers(path)) {
        if (r === path) continue;
        visit(r);
        if (present.has(r)) canInvalidate = false;
      }
      if (canInvalidate) {
        store.db.invalidatePath(path);
        report({ kind: 'missing', path, message: `path '${path}' disappeared, removing from database...`, repaired: 'unregistered' }, false);
      } else {
        report(
          {
            kind: 'missing-with-referrers',
            path,
            message: `path '${path}' disappeared, but it still has valid referrers!${opts.repair ? ' (cannot repair: no substituter to fetch it from)' : ''}`,
            repaired: null,
          },
          true,
        );
        present.add(path); // keep its referrers from being invalidated under it
      }
    };
    // Referrers of a missing path are visited first, so they see it missing.
    for (const p of valid) visit(p);

    for (const p of valid) {
      const info = store.queryPathInfo(p);
      if (!info) continue; // unregistered above
      for (const r of info.references) {
        if (!store.isValidPath(r)) {
          report({ kind: 'bad-reference', path: p, message: `path '${p}' refers to '${r}', which is not valid`, repaired: null }, true);
        }
      }
      if (info.ca) {
        let ok = false;
        try {
          ok = pathMatchesContentAddress(store.storeDir, p, parseContentAddress(info.ca), info.references);
        } catch {
          ok = false;
        }
        if (!ok) {
          report({ kind: 'ca-mismatch', path: p, message: `path '${p}' does not match its content address '${info.ca}'`, repaired: null }, true);
        }
      }
    }

    if (opts.checkContents) {
      log('checking link hashes...');
      let links: string[] = [];
      try {
        links = readdirSync(store.layout.linksDir);
      } catch {
        links = [];
      }
      for (const name of links) {
        const linkPath = join(store.layout.linksDir, name);
        try {
          const { hash } = await hashPath(linkPath);
          const got = formatHash(hash, 'nix32', false);
          if (got !== name) {
            let repaired: string | null = null;
            if (opts.repair) {
              unlinkSync(linkPath);
              repaired = 'removed';
            }
            report({ kind: 'bad-link', path: linkPath, message: `link '${linkPath}' was modified! expected hash '${name}', got '${got}'`, repaired }, !repaired);
          }
        } catch (e) {
          report({ kind: 'unreadable', path: linkPath, message: `cannot check link '${linkPath}': ${(e as Error).message}`, repaired: null }, true);
        }
      }

      log('checking store hashes...');
      for (const p of valid) {
        if (!present.has(p) || !onDisk.has(p.slice(store.storeDir.length + 1))) continue;
        const info = store.queryPathInfo(p);
        if (!info) continue;
        try {
          const cur = await hashPath(store.toRealPath(p), info.narHash.algo);
          const zero = info.narHash.digest.every((b) => b === 0);
          if (!zero && !hashEquals(cur.hash, info.narHash)) {
            report(
              {
                kind: 'hash-mismatch',
                path: p,
                message: `path '${p}' was modified! expected hash '${formatHash(info.narHash)}', got '${formatHash(cur.hash)}'${opts.repair ? ' (cannot repair: no substituter to fetch it from)' : ''}`,
                repaired: null,
              },
              true,
            );
          } else if (zero || info.narSize === 0) {
            // Old entries without a hash or size: fill them in, as Nix does.
            if (zero) info.narHash = cur.hash;
            if (info.narSize === 0) info.narSize = cur.narSize;
            store.db.updatePathInfo(info);
          }
        } catch (e) {
          if (store.isValidPath(p)) {
            report({ kind: 'unreadable', path: p, message: `cannot check '${p}': ${(e as Error).message}`, repaired: null }, true);
          }
        }
      }
    }
    return { errors, problems, checked: valid.length };
  });
}
