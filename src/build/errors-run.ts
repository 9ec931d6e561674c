// Failures of running builds (scheduler, goal, backends/none, builtins). The
// failures of registering outputs live in errors-register.ts. Messages follow
// Nix 2.8's wording where Nix has one, so users and scripts recognise them.
//
// exitCode is the nix-build status this failure alone would give; the
// scheduler combines several failures Nix's way (100 + timeout 1 + hash
// mismatch 2 + not deterministic 4; 1 when no build failed as such).
import { defineError } from '../errors.js';

/** The builder exited non-zero or was killed by a signal. */
export class BuilderFailed extends defineError('BuilderFailed', 'E_BUILDER_FAILED') {
  override exitCode = 100;
}
/** `timeout` or `max-silent-time` ran out; the whole build was killed. */
export class BuildTimedOut extends defineError('BuildTimedOut', 'E_BUILD_TIMED_OUT') {
  override exitCode = 101;
}
/** Some input derivation failed, so this one was not attempted. */
export class DependencyFailed extends defineError('DependencyFailed', 'E_DEPENDENCY_FAILED') {
  override exitCode = 100;
}
/** The derivation's system or requiredSystemFeatures are not offered here. */
export class PlatformMismatch extends defineError('PlatformMismatch', 'E_PLATFORM_MISMATCH') {}
/** /homeless-shelter exists: a build without a sandbox could read it as $HOME. */
export class HomeDirExists extends defineError('HomeDirExists', 'E_HOME_DIR_EXISTS') {}
/** max-jobs is 0 and the derivation is not a builtin. */
export class NoBuildSlots extends defineError('NoBuildSlots', 'E_NO_BUILD_SLOTS') {}
/** An input source (or a target) is not valid and nothing can produce it. */
export class MissingInputPath extends defineError('MissingInputPath', 'E_MISSING_INPUT_PATH') {}
/** A `^out,dev` selection names an output the derivation does not have. */
export class NoSuchOutput extends defineError('NoSuchOutput', 'E_NO_SUCH_OUTPUT') {}
/** A build target is neither a .drv store path, a .drv file nor a derivation .json file. */
export class BadBuildTarget extends defineError('BadBuildTarget', 'E_BAD_BUILD_TARGET') {}
/** Ctrl-C / SIGTERM: every running build was killed. */
export class BuildInterrupted extends defineError('BuildInterrupted', 'E_BUILD_INTERRUPTED') {}
/** A builtin builder (builtin:fetchurl, ...) failed; reported like a failing builder. */
export class BuiltinFailed extends defineError('BuiltinFailed', 'E_BUILTIN_FAILED') {
  override exitCode = 100;
}
/** A CA-dependent derivation could not be resolved after its inputs were built. */
export class ResolveFailed extends defineError('ResolveFailed', 'E_RESOLVE_FAILED') {}
/** `drvbox log`: no log was kept for the derivation. */
export class LogNotFound extends defineError('LogNotFound', 'E_LOG_NOT_FOUND') {}
/** The unsandboxed backend could not start the builder. */
export class BuilderStartFailed extends defineError('BuilderStartFailed', 'E_BUILDER_START_FAILED') {}
/** The build directory could not be created. */
export class BuildDirFailed extends defineError('BuildDirFailed', 'E_BUILD_DIR_FAILED') {}
/** build-users-group / auto-allocate-uids cannot give this build a user (no such group, no members, ids overlapping accounts, uid-range without a range). */
export class BuildUsersUnavailable extends defineError('BuildUsersUnavailable', 'E_BUILD_USERS_UNAVAILABLE') {}
