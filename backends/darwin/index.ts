// Public surface of the macOS sandbox-exec backend.
export { darwinBackend, createDarwinBackend, explainDarwinBuild, DARWIN_CAPABILITIES, type DarwinBackendDeps } from './darwin-backend.js';
export { planDarwin, isDarwinSpec, canonPath, parentsOf, PROFILE_FILE_NAME, DEFAULT_GLOBAL_TMP_DIR, type DarwinBuildRequest, type DarwinPlanOptions, type DarwinSandboxSpec } from './plan.js';
export { explainDarwin, shellQuote } from './explain.js';
export {
  chooseDarwinBuildDir,
  assertSocketPathFits,
  socketPathFits,
  DARWIN_SOCKET_PATH_MAX,
  DARWIN_SUN_PATH_SIZE,
  NIX_SOCKET_NAME,
  type BuildDirChoice,
  type BuildDirRequest,
} from './build-dir.js';
export { describeSpawn, binprefFor, sysctlsFor, SANDBOX_EXEC, CPU_TYPE_ARM64, CPU_TYPE_X86_64, type SpawnDescription, type FileAction, type SpawnCredentials } from './spawn-plan.js';
export { sbplString, allowGroups, sbplUnbalanced, SBPL_GROUP_BUDGET, SBPL_PATTERN_LIMIT, type PathFilter } from './sbpl.js';
export { assembleProfile, type ProfileInput } from './profile.js';
export { darwinDoctorFacts, hostDarwinFacts, parseSystemVersion, type DarwinDoctorFacts, type DarwinHostFacts, type MacosVersion } from './doctor.js';
export { startSpawn, applySpawn, SpawnedBuild, type WatchOptions } from './spawn-exec.js';
export { bindLibc, hostLibc, DARWIN_ABI, LINUX_ABI, type SpawnPrimitives, type KoffiLike } from './libc.js';
export { cleanupSysvIpc, listSysvObjects, bindSysv, type SysvPrimitives, type SysvObject } from './sysv-ipc.js';
export * from './errors.js';
