// The public surface of the store layer.
export { LocalStore, storeSettingsFrom, type StoreSettings, type OpenStoreOptions, type ClosureOptions } from './local-store.js';
export { openStore, DaemonStoreUnsupported } from './open.js';
export { storeLayout, ensureLayout, type StoreLayout, type LocalStoreLocation } from './layout.js';
export { StoreDb, drvOutputIdString, parseDrvOutputId, type DrvOutputId, type Realisation, type Registration } from './db.js';
export { completePathInfo, pathInfoJson, type PathInfo, type NewPathInfo } from './path-info.js';
export {
  parseContentAddress,
  renderContentAddress,
  contentAddressedPath,
  pathMatchesContentAddress,
  type ContentAddress,
  type IngestionMethod,
} from './content-address.js';
export { addPathToStore, addTextToStore, addNarToStore, addDumpToStore, type AddMethod, type AddPathOptions } from './add.js';
export { installStaged, makeTempStorePath, NarBytesSink, NarEventSink, type Staged, type TempStorePath } from './ingest.js';
export { importPaths, type ImportResult } from './import.js';
export { exportPaths, narFromPath } from './export.js';
export { verifyStore, type VerifyOptions, type VerifyResult, type VerifyProblem } from './verify.js';
export { collectGarbage, type GcOptions, type GcResult, type GcAction } from './gc.js';
export { canonicalisePathMetaData, canonicaliseTimestampAndPermissions, STORE_MTIME, type CanonicaliseOptions } from './canonicalise.js';
export { lockPaths, type PathLocks, type LockPathsOptions } from './path-locks.js';
export { TempRoots, withGcLock } from './temp-roots.js';
export {
  addIndirectRoot,
  addPermRoot,
  findPermanentRoots,
  findAllRoots,
  findTempRoots,
  findRuntimeRoots,
  indirectRootPath,
  type Roots,
} from './gc-roots.js';
export { topoSort, closure } from './closure.js';
export { optimisePath, optimiseStore, type OptimiseStats } from './optimise.js';
export { deletePath } from './fs-util.js';
export * from './errors.js';
