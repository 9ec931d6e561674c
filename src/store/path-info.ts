// What the database knows about a valid store path (Nix's ValidPathInfo), and
// its `nix path-info --json` rendering.
import { formatHash, type Hash } from '../format/hash.js';

export interface PathInfo {
  path: string;
  /** sha256 of the NAR serialisation. */
  narHash: Hash;
  narSize: number;
  /** Store paths, sorted; may include `path` itself. */
  references: string[];
  deriver: string | null;
  /** Seconds since the epoch; 0 when registering means "now". */
  registrationTime: number;
  /** Built locally (trusted without signatures). */
  ultimate: boolean;
  sigs: string[];
  /** Rendered content address (content-address.ts), or null. */
  ca: string | null;
}

/** A new path's metadata: registration time, ultimate and sigs default to now / false / []. */
export type NewPathInfo = Omit<PathInfo, 'registrationTime' | 'ultimate' | 'sigs' | 'deriver' | 'ca'> &
  Partial<Pick<PathInfo, 'registrationTime' | 'ultimate' | 'sigs' | 'deriver' | 'ca'>>;

export function completePathInfo(i: NewPathInfo): PathInfo {
  return {
    path: i.path,
    narHash: i.narHash,
    narSize: i.narSize,
    references: [...new Set(i.references)].sort(),
    deriver: i.deriver ?? null,
    registrationTime: i.registrationTime ?? 0,
    ultimate: i.ultimate ?? false,
    sigs: [...new Set(i.sigs ?? [])].sort(),
    ca: i.ca ?? null,
  };
}

/** One element of `nix path-info --json` (Nix 2.8 field order and encodings). */
export function pathInfoJson(info: PathInfo, closureSize?: number): Record<string, unknown> {
  const o: Record<string, unknown> = {
    path: info.path,
    narHash: formatHash(info.narHash, 'sri'),
    narSize: info.narSize,
    references: [...info.references].sort(),
  };
  if (info.ca) o.ca = info.ca;
  if (closureSize !== undefined) o.closureSize = closureSize;
  if (info.deriver) o.deriver = info.deriver;
  if (info.registrationTime) o.registrationTime = info.registrationTime;
  if (info.ultimate) o.ultimate = true;
  if (info.sigs.length > 0) o.signatures = [...info.sigs].sort();
  return o;
}
