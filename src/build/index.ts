// The build engine's public surface (the run side: scheduler, goal, logs,
// progress, builtins, CA resolution; planOutputs/desugar/registerOutputs are
// imported from their own modules).
export { buildTargets, exitStatus, Semaphore, type BuildSummary, type Reporter, type SchedulerOptions, type TargetResult, type TargetStatus } from './scheduler.js';
export {
  runGoal,
  defaultParts,
  runSettingsFrom,
  checkPlatform,
  makeBuildRequest,
  flushBackgroundWork,
  inputRoots,
  describeExit,
  parseSandboxPathSetting,
  HOMELESS_SHELTER,
  type EngineParts,
  type FailureKind,
  type GoalInput,
  type GoalReporter,
  type GoalResult,
  type RecursiveBuildHook,
  type RecursiveSessionHandle,
  type RunningGoal,
  type RunSettings,
  type Slots,
} from './goal.js';
export {
  createRecursiveHook,
  recursiveBuildDirName,
  networkDerivationToBuild,
  socketPathLimit,
  NIX_SOCKET_NAME,
  RecursiveSocketPathTooLong,
  type RecursiveHookOptions,
  type RecursiveSession,
} from './recursive.js';
export { resolveTargets, addDerivationFile, type BuildTarget } from './targets.js';
export { BuildLog, drvLogPath, findDrvLog, overlayCarriageReturns, DEFAULT_TAIL_LINES } from './logs.js';
export { Progress, failureLines, fitWidth, sanitizeForStatus, type ProgressOptions } from './progress.js';
export { makeBuildDir, removeBuildDir } from './build-dir.js';
export { explainDerivation } from './explain.js';
export { needsResolution, resolveDerivation, writeResolved, recordOriginalRealisations, type Resolved } from './resolve.js';
export { runBuiltin, type BuiltinContext } from './builtins/index.js';
export { DrvAttrs } from './drv-attrs.js';
export * from './errors-run.js';
