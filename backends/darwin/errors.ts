// Failures of the macOS backend: one class per failure, each message naming
// the derivation (or path) and the offending value.
import { defineError } from '../../src/errors.js';

/** A path that cannot be written into an SBPL string (NUL or newline). */
export class SbplUnsafePath extends defineError('SbplUnsafePath', 'E_SBPL_UNSAFE_PATH') {}

/** sandbox-paths entry `TARGET=SOURCE` with TARGET != SOURCE: macOS cannot rename paths. */
export class DarwinMappedPathMismatch extends defineError('DarwinMappedPathMismatch', 'E_DARWIN_MAPPED_PATH') {}

/** A non-optional sandbox path (or an input store path) does not exist. */
export class DarwinRequiredPathMissing extends defineError('DarwinRequiredPathMissing', 'E_DARWIN_PATH_MISSING') {}

/** __impureHostDeps names a path outside allowed-impure-host-deps. */
export class DarwinImpureHostDepNotAllowed extends defineError('DarwinImpureHostDepNotAllowed', 'E_DARWIN_IMPURE_HOST_DEP') {}

/** __sandboxProfile with `sandbox = true`. */
export class DarwinSandboxProfileNotAllowed extends defineError('DarwinSandboxProfileNotAllowed', 'E_DARWIN_SANDBOX_PROFILE') {}

/** __noChroot with `sandbox = true`. */
export class DarwinNoChrootNotAllowed extends defineError('DarwinNoChrootNotAllowed', 'E_DARWIN_NO_CHROOT') {}

/** The store's physical directory differs from its logical one. */
export class DarwinDivertedStore extends defineError('DarwinDivertedStore', 'E_DARWIN_DIVERTED_STORE') {}

/** requiredSystemFeatures has uid-range, or the build user has a uid range. */
export class DarwinUidRangeUnsupported extends defineError('DarwinUidRangeUnsupported', 'E_DARWIN_UID_RANGE') {}

/** recursive-nix with the sandbox on: a running sandbox-exec profile cannot grow. */
export class DarwinRecursiveNixSandboxed extends defineError('DarwinRecursiveNixSandboxed', 'E_DARWIN_RECURSIVE_NIX') {}

/** A unix socket path longer than Darwin's sun_path allows. */
export class DarwinSocketPathTooLong extends defineError('DarwinSocketPathTooLong', 'E_DARWIN_SOCKET_PATH') {}

/** The temporary or build directory would open too much of the host. */
export class DarwinUnsafeDirectory extends defineError('DarwinUnsafeDirectory', 'E_DARWIN_UNSAFE_DIR') {}

/** Builder, arguments or environment that cannot be handed to posix_spawn. */
export class DarwinBadBuilder extends defineError('DarwinBadBuilder', 'E_DARWIN_BAD_BUILDER') {}

/** posix_spawn (or one of its attribute calls) failed. */
export class DarwinSpawnFailed extends defineError('DarwinSpawnFailed', 'E_DARWIN_SPAWN') {}

/** The C library could not be bound (not macOS, koffi missing, symbol missing). */
export class DarwinLibcUnavailable extends defineError('DarwinLibcUnavailable', 'E_DARWIN_LIBC') {}

/** Processes of the build survived every kill attempt. */
export class DarwinKillFailed extends defineError('DarwinKillFailed', 'E_DARWIN_KILL') {}

/** addPath() on macOS: paths cannot appear inside a running sandbox. */
export class DarwinCannotAddPaths extends defineError('DarwinCannotAddPaths', 'E_DARWIN_ADD_PATH') {}

/** The spec handed to start()/explain() is not one this backend planned. */
export class DarwinBadSpec extends defineError('DarwinBadSpec', 'E_DARWIN_BAD_SPEC') {}

/** A sandbox-paths or __impureHostDeps entry that is not an absolute path. */
export class DarwinBadSandboxPath extends defineError('DarwinBadSandboxPath', 'E_DARWIN_BAD_SANDBOX_PATH') {}

/** __sandboxProfile text that is not a sequence of complete SBPL forms. */
export class DarwinSandboxProfileInvalid extends defineError('DarwinSandboxProfileInvalid', 'E_DARWIN_SANDBOX_PROFILE_INVALID') {}
