// Failures of the Linux sandbox backend: one class per failure, each message
// naming the derivation (when there is one) and the offending value.
import { defineError } from '../../src/errors.js';

/** A string bound for the launcher (path, argument, env) contains a NUL byte. */
export class SandboxNulByte extends defineError('SandboxNulByte', 'E_SANDBOX_NUL_BYTE') {}
/** A sandbox-paths entry is malformed (relative, `..`, trailing-slash mismatch, ...). */
export class SandboxPathInvalid extends defineError('SandboxPathInvalid', 'E_SANDBOX_PATH_INVALID') {}
/** A non-optional sandbox-paths source does not exist on the host. */
export class SandboxPathMissing extends defineError('SandboxPathMissing', 'E_SANDBOX_PATH_MISSING') {}
/** An input store path is missing from the physical store directory. */
export class SandboxInputMissing extends defineError('SandboxInputMissing', 'E_SANDBOX_INPUT_MISSING') {}
/** __impureHostDeps names a path outside allowed-impure-host-deps. */
export class ImpureHostDepNotAllowed extends defineError('ImpureHostDepNotAllowed', 'E_IMPURE_HOST_DEP_NOT_ALLOWED') {}
/** The build request itself is inconsistent (bad store dir, build dir, ...). */
export class SandboxRequestInvalid extends defineError('SandboxRequestInvalid', 'E_SANDBOX_REQUEST_INVALID') {}
/** `__noChroot` with sandbox = true. */
export class NoChrootNotAllowed extends defineError('NoChrootNotAllowed', 'E_NO_CHROOT_NOT_ALLOWED') {}
/** `__sandboxProfile` outside relaxed mode (darwin rule, decided here too). */
export class SandboxProfileNotAllowed extends defineError('SandboxProfileNotAllowed', 'E_SANDBOX_PROFILE_NOT_ALLOWED') {}
/** The host cannot sandbox and sandbox-fallback is off. */
export class SandboxUnavailable extends defineError('SandboxUnavailable', 'E_SANDBOX_UNAVAILABLE') {}
/** A diverted store needs the sandbox, which is off or unavailable. */
export class DivertedStoreNeedsSandbox extends defineError('DivertedStoreNeedsSandbox', 'E_DIVERTED_STORE_NEEDS_SANDBOX') {}
/** The compiled launcher is absent (no C compiler at install time). */
export class LauncherMissing extends defineError('LauncherMissing', 'E_LAUNCHER_MISSING') {}
/** The launcher reported a fatal error while setting up the sandbox. */
export class SandboxSetupFailed extends defineError('SandboxSetupFailed', 'E_SANDBOX_SETUP_FAILED') {}
/** filter-syscalls is on but libseccomp cannot be loaded or used. */
export class SeccompUnavailable extends defineError('SeccompUnavailable', 'E_SECCOMP_UNAVAILABLE') {}
/** A path could not be made visible inside a running sandbox. */
export class AddPathFailed extends defineError('AddPathFailed', 'E_ADD_PATH_FAILED') {}
/** cgroup setup or teardown failed with use-cgroups on. */
export class CgroupFailed extends defineError('CgroupFailed', 'E_CGROUP_FAILED') {}
/** A path could not be hidden from a held sandbox. */
export class RemovePathFailed extends defineError('RemovePathFailed', 'E_REMOVE_PATH_FAILED') {}
/** A path handed to addPaths/removePaths is not one store path of the build's store dir. */
export class SandboxStorePathInvalid extends defineError('SandboxStorePathInvalid', 'E_SANDBOX_STORE_PATH_INVALID') {}
/** startHeld() with DRVBOX_LAUNCHER_ONESHOT=1: holding needs the launcher server. */
export class HeldBuildNeedsServer extends defineError('HeldBuildNeedsServer', 'E_HELD_BUILD_NEEDS_SERVER') {}
/** startHeld() on a spec not planned with `held`. */
export class HeldBuildNotPlanned extends defineError('HeldBuildNotPlanned', 'E_HELD_BUILD_NOT_PLANNED') {}
/** release(), addPaths() or removePaths() after abandon(). */
export class HeldBuildAbandoned extends defineError('HeldBuildAbandoned', 'E_HELD_BUILD_ABANDONED') {}
/** release(), addPaths() or removePaths() after release(). */
export class HeldBuildAlreadyReleased extends defineError('HeldBuildAlreadyReleased', 'E_HELD_BUILD_ALREADY_RELEASED') {}

/** What a held build is in: addPaths, removePaths and release work only while 'held'. */
export type HeldState = 'held' | 'released' | 'abandoned';

/**
 * Throws unless a held build (`noun`: "held sandbox", "held build") can still
 * `what` (e.g. "add paths"); the message names the derivation. Shared by the
 * Linux sandbox's and the unsandboxed backend's held builds.
 */
export function checkHeld(state: HeldState, drvPath: string, noun: string, what: string): void {
  const ctx = `derivation '${drvPath}'`;
  if (state === 'abandoned') throw new HeldBuildAbandoned(`${ctx}: cannot ${what}: the ${noun} was abandoned`, { drvPath });
  if (state === 'released') throw new HeldBuildAlreadyReleased(`${ctx}: cannot ${what}: the ${noun} was already released`, { drvPath });
}
