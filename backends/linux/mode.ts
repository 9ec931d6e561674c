// Whether one build runs sandboxed: the `sandbox` setting (true / false /
// relaxed), the derivation's `__noChroot`, a diverted store, and what the
// host can do. Wording of the errors follows Nix's so users recognise them.
import type { Platform, SandboxMode } from '../backend.js';
import {
  DivertedStoreNeedsSandbox,
  NoChrootNotAllowed,
  SandboxProfileNotAllowed,
  SandboxUnavailable,
} from './errors.js';

export interface SandboxDecisionInput {
  drvPath: string;
  mode: SandboxMode;
  /** The derivation sets `__noChroot = true`. */
  noChroot: boolean;
  /** Not fixed-output and not impure (Nix's `isSandboxed()`). */
  sandboxedDerivation: boolean;
  /** darwin `__sandboxProfile`, '' when absent. */
  additionalSandboxProfile?: string;
  platform: Platform;
  /** The store's physical dir differs from its logical one. */
  divertedStore: boolean;
  realStoreDir?: string;
  storeDir?: string;
  /** probe() says the sandbox works here. */
  sandboxAvailable: boolean;
  /** The failed probe step, for messages. */
  unavailableReason?: string;
  sandboxFallback: boolean;
}

export interface SandboxDecision {
  useSandbox: boolean;
  /** Printed on every build that falls back (never silent). */
  warning: string | null;
}

export function decideSandbox(i: SandboxDecisionInput): SandboxDecision {
  let use: boolean;
  if (i.mode === 'true') {
    if (i.noChroot) {
      throw new NoChrootNotAllowed(
        `derivation '${i.drvPath}' has '__noChroot' set, but that's not allowed when 'sandbox' is 'true'`,
        { drvPath: i.drvPath },
      );
    }
    if (i.platform === 'darwin' && (i.additionalSandboxProfile ?? '') !== '') {
      throw new SandboxProfileNotAllowed(
        `derivation '${i.drvPath}' specifies a sandbox profile, but this is only allowed when 'sandbox' is 'relaxed'`,
        { drvPath: i.drvPath },
      );
    }
    use = true;
  } else if (i.mode === 'false') {
    use = false;
  } else {
    use = i.sandboxedDerivation && !i.noChroot;
  }

  if (i.divertedStore) {
    if (i.platform !== 'linux') {
      throw new DivertedStoreNeedsSandbox('building using a diverted store is not supported on this platform', {
        drvPath: i.drvPath,
      });
    }
    // The inputs only appear at their logical paths inside the sandbox.
    use = true;
  }

  if (use && !i.sandboxAvailable) {
    const why = i.unavailableReason ? ` (${i.unavailableReason})` : '';
    if (i.divertedStore) {
      throw new DivertedStoreNeedsSandbox(
        `cannot build '${i.drvPath}': the store's physical directory '${i.realStoreDir ?? '?'}' differs from ` +
          `'${i.storeDir ?? '?'}', and only a sandbox can show its paths there, but sandboxing is unavailable${why}; ` +
          `see 'drvbox doctor'`,
        { drvPath: i.drvPath },
      );
    }
    if (!i.sandboxFallback) {
      throw new SandboxUnavailable(
        `this system does not support the kernel namespaces that are required for sandboxing${why}; ` +
          `use '--no-sandbox' to disable sandboxing`,
        { drvPath: i.drvPath },
      );
    }
    return {
      useSandbox: false,
      warning: `warning: building '${i.drvPath}' WITHOUT a sandbox: sandboxing is unavailable on this host${why} and 'sandbox-fallback' is true`,
    };
  }
  return { useSandbox: use, warning: null };
}
