// The store's failures, one class per failure. Messages name the store path
// (or file) and the offending value.
import { defineError } from '../errors.js';

/** A store path that is not registered in the database. */
export class InvalidPath extends defineError('InvalidPath', 'E_INVALID_PATH') {}
/** The database or its schema file is of a version drvbox cannot use. */
export class UnsupportedSchema extends defineError('UnsupportedSchema', 'E_UNSUPPORTED_SCHEMA') {}
/** A file-system problem with the store layout (not writable, a symlinked store dir, ...). */
export class StoreLayoutError extends defineError('StoreLayoutError', 'E_STORE_LAYOUT') {}
/** Registering a path whose reference is neither valid nor registered in the same batch. */
export class ReferenceNotValid extends defineError('ReferenceNotValid', 'E_REFERENCE_NOT_VALID') {}
/** A cycle in the references of paths being registered or sorted. */
export class ReferenceCycle extends defineError('ReferenceCycle', 'E_REFERENCE_CYCLE') {}
/** The NAR of a path does not have the hash its metadata claims. */
export class NarHashMismatch extends defineError('NarHashMismatch', 'E_NAR_HASH_MISMATCH') {}
/** The NAR of a path does not have the size its metadata claims. */
export class NarSizeMismatch extends defineError('NarSizeMismatch', 'E_NAR_SIZE_MISMATCH') {}
/** A path claims a content address that its name or contents do not match. */
export class ContentAddressMismatch extends defineError('ContentAddressMismatch', 'E_CA_MISMATCH') {}
/** A content-address string that cannot be parsed. */
export class BadContentAddress extends defineError('BadContentAddress', 'E_BAD_CONTENT_ADDRESS') {}
/** Deleting a path that valid paths still refer to. */
export class PathInUse extends defineError('PathInUse', 'E_PATH_IN_USE') {}
/** A file in a new path owned by someone other than the expected (build) user. */
export class InvalidOwnership extends defineError('InvalidOwnership', 'E_INVALID_OWNERSHIP') {}
/** The source of `store add` is missing or of the wrong kind for the mode. */
export class BadAddSource extends defineError('BadAddSource', 'E_BAD_ADD_SOURCE') {}
/** An entry of an export stream that cannot be imported (path, references). */
export class BadImportEntry extends defineError('BadImportEntry', 'E_BAD_IMPORT_ENTRY') {}
/** Locking a file failed for a reason other than contention. */
export class LockFailed extends defineError('LockFailed', 'E_LOCK_FAILED') {}
/** A lock could not be taken without waiting (non-blocking request). */
export class LockBusy extends defineError('LockBusy', 'E_LOCK_BUSY') {}
/** A GC root that cannot be created (inside the store, or clobbering a file). */
export class BadGcRoot extends defineError('BadGcRoot', 'E_BAD_GC_ROOT') {}
/** A realisation that conflicts with one already registered. */
export class RealisationConflict extends defineError('RealisationConflict', 'E_REALISATION_CONFLICT') {}
/** A derivation registered with output paths that do not follow from it. */
export class BadDerivationOutputs extends defineError('BadDerivationOutputs', 'E_BAD_DERIVATION_OUTPUTS') {}
/** A path exported whose contents changed since it was registered. */
export class PathModified extends defineError('PathModified', 'E_PATH_MODIFIED') {}
/** The target of `store restore` already exists. */
export class RestoreTargetExists extends defineError('RestoreTargetExists', 'E_RESTORE_TARGET_EXISTS') {}
/** A file-system call failed (permission, disk full, ...); the message names the file and the errno. */
export class StoreIoError extends defineError('StoreIoError', 'E_STORE_IO') {}

/** Turns a raw Node errno error into a StoreIoError (other errors pass through). */
export function asStoreIoError(e: unknown, doing: string): unknown {
  const err = e as NodeJS.ErrnoException;
  if (err instanceof Error && typeof err.code === 'string' && /^E[A-Z0-9]+$/.test(err.code) && !('fields' in err)) {
    return new StoreIoError(`${doing}: ${err.message}`, { errno: err.code, path: err.path ?? null }, { cause: e });
  }
  return e;
}
