// Naming the top build directory so unix sockets inside it stay usable.
//
// Darwin's sockaddr_un.sun_path holds 104 bytes including the terminating
// NUL, so a socket path may have at most 103 bytes. The recursive-build daemon
// listens on `<build dir>/.nix-socket`, and builders' own test suites create
// sockets there too (Nix issue 13462): the shorter the directory, the better.
import { DarwinSocketPathTooLong } from './errors.js';

export const DARWIN_SUN_PATH_SIZE = 104;
export const DARWIN_SOCKET_PATH_MAX = DARWIN_SUN_PATH_SIZE - 1;
export const NIX_SOCKET_NAME = '.nix-socket';
export const DEFAULT_BUILD_DIR_PREFIX = 'nix-build-';
/** At most this much of the derivation name goes into the directory name. */
export const DEFAULT_MAX_NAME_BYTES = 24;

export function socketPathBytes(path: string): number {
  return Buffer.byteLength(path);
}

export function socketPathFits(path: string, max = DARWIN_SOCKET_PATH_MAX): boolean {
  return socketPathBytes(path) <= max;
}

export interface BuildDirRequest {
  /** Directory the build dir is created in, symlinks already resolved (e.g. /private/tmp). */
  parent: string;
  drvName: string;
  /** Distinguishes concurrent builds of one derivation (a counter or random token). */
  unique: string | number;
  /** Fail unless `<dir>/.nix-socket` fits (recursive-nix builds). */
  requireSocket?: boolean;
  prefix?: string;
  maxNameBytes?: number;
}

export interface BuildDirChoice {
  /** The directory to create (mode 0700). */
  path: string;
  /** Its last component. */
  name: string;
  socketPath: string;
  socketFits: boolean;
  /** Bytes left for a socket name directly in the directory (0 when none fit). */
  socketHeadroom: number;
}

/** Cuts `s` to at most `max` UTF-8 bytes without splitting a character. */
function truncateUtf8(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  let out = '';
  for (const ch of s) {
    if (Buffer.byteLength(out + ch) > max) break;
    out += ch;
  }
  return out;
}

/**
 * `<parent>/<prefix><name>-<unique>`, with the derivation name shortened (or
 * dropped) until `<dir>/.nix-socket` fits in 103 bytes. When even the bare
 * `<prefix><unique>` is too long, the socket cannot fit: an error when
 * `requireSocket`, else the shortest name.
 */
export function chooseDarwinBuildDir(req: BuildDirRequest): BuildDirChoice {
  const prefix = req.prefix ?? DEFAULT_BUILD_DIR_PREFIX;
  const parent = req.parent.length > 1 ? req.parent.replace(/\/+$/, '') : req.parent;
  const base = parent === '/' ? '' : parent;
  const tail = `-${req.unique}`;
  const fixedBytes = Buffer.byteLength(`${base}/${prefix}${tail}/${NIX_SOCKET_NAME}`);
  const room = DARWIN_SOCKET_PATH_MAX - fixedBytes;
  const cleanName = req.drvName.replace(/[^A-Za-z0-9+._?=-]/g, '_');
  const nameBudget = Math.max(0, Math.min(room, req.maxNameBytes ?? DEFAULT_MAX_NAME_BYTES));
  // A cut name should not end in a separator: 'python3.12-scikit-learn-7', not '…-learn--7'.
  const name = truncateUtf8(cleanName, nameBudget).replace(/[-.]+$/, '');
  const dirName = name === '' ? `${prefix}${String(req.unique)}` : `${prefix}${name}${tail}`;
  const path = `${base}/${dirName}`;
  const socketPath = `${path}/${NIX_SOCKET_NAME}`;
  const fits = socketPathFits(socketPath);
  if (!fits && req.requireSocket) {
    throw new DarwinSocketPathTooLong(
      `cannot build '${req.drvName}' with recursive-nix under '${parent}': the daemon socket '${socketPath}' has ${socketPathBytes(socketPath)} bytes, more than the ${DARWIN_SOCKET_PATH_MAX} macOS allows; use a shorter build directory parent`,
      { drvName: req.drvName, parent, socketPath, bytes: socketPathBytes(socketPath), max: DARWIN_SOCKET_PATH_MAX },
    );
  }
  const headroom = Math.max(0, DARWIN_SOCKET_PATH_MAX - Buffer.byteLength(path + '/'));
  return { path, name: dirName, socketPath, socketFits: fits, socketHeadroom: headroom };
}

/** Throws when a socket path the build will use does not fit. */
export function assertSocketPathFits(path: string, drvPath: string): void {
  if (!socketPathFits(path)) {
    throw new DarwinSocketPathTooLong(
      `derivation '${drvPath}': unix socket path '${path}' has ${socketPathBytes(path)} bytes, more than the ${DARWIN_SOCKET_PATH_MAX} macOS allows`,
      { drvPath, socketPath: path, bytes: socketPathBytes(path), max: DARWIN_SOCKET_PATH_MAX },
    );
  }
}
