// The Nix worker protocol: fixed numbers and the version rules.
//
// Connection:
//   client: u64 WORKER_MAGIC_1
//   server: u64 WORKER_MAGIC_2, u64 serverVersion
//   client: u64 clientVersion
//           [minor >= 14] u64 0|1 (obsolete CPU affinity; 1 is followed by u64)
//           [minor >= 11] u64 0   (obsolete reserveSpace)
//   server: [minor >= 33] string nixVersion
//           stderr frames ... STDERR_LAST | STDERR_ERROR (startup errors)
//   then requests:  u64 op, op arguments; the server answers with stderr frames
//   ending in STDERR_LAST (then the op's result) or STDERR_ERROR (no result).
//
// A version is (major << 8 | minor). Each side decides every version-dependent
// encoding from the OTHER side's number, which in practice means both use
// min(client, server): Nix 2.8 speaks 1.34.
import { defineError } from '../errors.js';

export const WORKER_MAGIC_1 = 0x6e697863; // "cxin" as little-endian bytes, client hello
export const WORKER_MAGIC_2 = 0x6478696f; // "oixd", server hello

export const PROTOCOL_MAJOR = 1;
export const PROTOCOL_MINOR = 34;
export const PROTOCOL_VERSION = (PROTOCOL_MAJOR << 8) | PROTOCOL_MINOR;
/** Oldest peer minor we speak: Nix 2.0 (protocol 1.21) and later. */
export const MIN_SUPPORTED_MINOR = 21;

export function protocolMajor(v: number): number {
  return (v >> 8) & 0xff;
}
export function protocolMinor(v: number): number {
  return v & 0xff;
}
export function formatVersion(v: number): string {
  return `${protocolMajor(v)}.${protocolMinor(v)}`;
}

/** Minor versions at which an encoding changed (names say what appeared). */
export const Since = {
  ReserveSpace: 11,
  CpuAffinity: 14,
  ValidPathInfoUltimate: 16,
  QueryPathInfoValidFlag: 17,
  Activities: 20,
  TunnelledNarImport: 21,
  SubstitutableInfosWithCa: 22,
  QueryDerivationOutputMap: 22,
  FramedAddToStoreNar: 23,
  NewAddToStore: 25,
  StructuredErrors: 26,
  QueryValidPathsSubstitute: 27,
  BuildDerivationOutputs: 28,
  BuildDerivationTimes: 29,
  DerivedPaths: 30,
  RealisationJson: 31,
  AddMultipleToStore: 32,
  NixVersionString: 33,
  BuildPathsWithResults: 34,
} as const;

export const Op = {
  IsValidPath: 1,
  HasSubstitutes: 3,
  QueryPathHash: 4,
  QueryReferences: 5,
  QueryReferrers: 6,
  AddToStore: 7,
  AddTextToStore: 8,
  BuildPaths: 9,
  EnsurePath: 10,
  AddTempRoot: 11,
  AddIndirectRoot: 12,
  SyncWithGC: 13,
  FindRoots: 14,
  ExportPath: 16,
  QueryDeriver: 18,
  SetOptions: 19,
  CollectGarbage: 20,
  QuerySubstitutablePathInfo: 21,
  QueryDerivationOutputs: 22,
  QueryAllValidPaths: 23,
  QueryFailedPaths: 24,
  ClearFailedPaths: 25,
  QueryPathInfo: 26,
  ImportPaths: 27,
  QueryDerivationOutputNames: 28,
  QueryPathFromHashPart: 29,
  QuerySubstitutablePathInfos: 30,
  QueryValidPaths: 31,
  QuerySubstitutablePaths: 32,
  QueryValidDerivers: 33,
  OptimiseStore: 34,
  VerifyStore: 35,
  BuildDerivation: 36,
  AddSignatures: 37,
  NarFromPath: 38,
  AddToStoreNar: 39,
  QueryMissing: 40,
  QueryDerivationOutputMap: 41,
  RegisterDrvOutput: 42,
  QueryRealisation: 43,
  AddMultipleToStore: 44,
  AddBuildLog: 45,
  BuildPathsWithResults: 46,
} as const;
export type OpName = keyof typeof Op;
export type OpCode = (typeof Op)[OpName];

const OP_NAMES = new Map<number, OpName>(Object.entries(Op).map(([k, v]) => [v, k as OpName]));
/** The name of an op code, or null when the protocol has no such op. */
export function opName(code: number): OpName | null {
  return OP_NAMES.get(code) ?? null;
}

export const Stderr = {
  Next: 0x6f6c6d67, // a log line
  Read: 0x64617461, // server asks the client for data (tunnelled source)
  Write: 0x64617416, // server sends data for the client's sink
  Last: 0x616c7473, // the op succeeded; its result follows
  Error: 0x63787470, // the op failed
  StartActivity: 0x53545254,
  StopActivity: 0x53544f50,
  Result: 0x52534c54,
} as const;

export const Verbosity = {
  Error: 0,
  Warn: 1,
  Notice: 2,
  Info: 3,
  Talkative: 4,
  Chatty: 5,
  Debug: 6,
  Vomit: 7,
} as const;

export const BuildMode = { Normal: 0, Repair: 1, Check: 2 } as const;
export type BuildModeCode = (typeof BuildMode)[keyof typeof BuildMode];

export const BuildStatus = {
  Built: 0,
  Substituted: 1,
  AlreadyValid: 2,
  PermanentFailure: 3,
  InputRejected: 4,
  OutputRejected: 5,
  TransientFailure: 6,
  CachedFailure: 7,
  TimedOut: 8,
  MiscFailure: 9,
  DependencyFailed: 10,
  LogLimitExceeded: 11,
  NotDeterministic: 12,
  ResolvesToAlreadyValid: 13,
  NoSubstituters: 14,
} as const;

export function buildSucceeded(status: number): boolean {
  return (
    status === BuildStatus.Built ||
    status === BuildStatus.Substituted ||
    status === BuildStatus.AlreadyValid ||
    status === BuildStatus.ResolvesToAlreadyValid
  );
}

export const GcAction = { ReturnLive: 0, ReturnDead: 1, DeleteDead: 2, DeleteSpecific: 3 } as const;

export const ActivityType = {
  Unknown: 0,
  CopyPath: 100,
  FileTransfer: 101,
  Realise: 102,
  CopyPaths: 103,
  Builds: 104,
  Build: 105,
  OptimiseStore: 106,
  VerifyPaths: 107,
  Substitute: 108,
  QueryPathInfo: 109,
  PostBuildHook: 110,
  BuildWaiting: 111,
} as const;

export const ResultType = {
  FileLinked: 100,
  BuildLogLine: 101,
  UntrustedPath: 102,
  CorruptedPath: 103,
  SetPhase: 104,
  Progress: 105,
  SetExpected: 106,
  PostBuildLogLine: 107,
} as const;

/** Logger field tags inside activity frames. */
export const FieldType = { Int: 0, String: 1 } as const;

export class ProtocolMismatch extends defineError('ProtocolMismatch', 'E_PROTOCOL_MISMATCH') {}
export class UnsupportedProtocolVersion extends defineError('UnsupportedProtocolVersion', 'E_PROTOCOL_VERSION') {}

/**
 * The version both sides act on. Throws when the peer's major differs or its
 * minor is older than we support.
 */
export function negotiateVersion(peer: number, ours = PROTOCOL_VERSION, who = 'peer'): number {
  if (protocolMajor(peer) !== protocolMajor(ours)) {
    throw new UnsupportedProtocolVersion(
      `${who} speaks worker protocol ${formatVersion(peer)}, which is not major version ${protocolMajor(ours)}`,
      { peer: formatVersion(peer) },
    );
  }
  if (protocolMinor(peer) < MIN_SUPPORTED_MINOR) {
    throw new UnsupportedProtocolVersion(
      `${who} speaks worker protocol ${formatVersion(peer)}, older than the oldest supported 1.${MIN_SUPPORTED_MINOR}`,
      { peer: formatVersion(peer) },
    );
  }
  return Math.min(peer, ours);
}
