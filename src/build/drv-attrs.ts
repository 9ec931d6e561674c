// Derivation attributes as Nix's ParsedDerivation reads them: from the
// structured-attrs object (`__json`) when there is one, else from the
// environment, where a boolean is "1" and a list is split on whitespace.
import type { Derivation } from '../format/derivation.js';

export class DrvAttrs {
  private readonly structured: Record<string, unknown> | null;

  constructor(readonly drv: Derivation) {
    const j = drv.env.get('__json');
    let parsed: unknown = null;
    if (j !== undefined) {
      try {
        parsed = JSON.parse(j);
      } catch {
        parsed = null; // desugar reports the bad JSON with Nix's message
      }
    }
    this.structured = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : null;
  }

  get hasStructuredAttrs(): boolean {
    return this.structured !== null;
  }

  string(name: string): string | undefined {
    if (this.structured) {
      const v = this.structured[name];
      return typeof v === 'string' ? v : undefined;
    }
    return this.drv.env.get(name);
  }

  bool(name: string, def = false): boolean {
    if (this.structured) {
      const v = this.structured[name];
      return typeof v === 'boolean' ? v : def;
    }
    const v = this.drv.env.get(name);
    return v === undefined ? def : v === '1';
  }

  strings(name: string): string[] | undefined {
    if (this.structured) {
      const v = this.structured[name];
      if (!Array.isArray(v)) return undefined;
      return v.filter((x): x is string => typeof x === 'string');
    }
    const v = this.drv.env.get(name);
    return v === undefined ? undefined : v.split(/[ \t\n\r]+/).filter(Boolean);
  }

  /** requiredSystemFeatures, sorted and unique (Nix's StringSet). */
  requiredSystemFeatures(): string[] {
    return [...new Set(this.strings('requiredSystemFeatures') ?? [])].sort();
  }
}
