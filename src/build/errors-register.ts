// The failures of preparing a build (desugaring the derivation, the
// pre-build hook) and of registering its outputs. Messages follow Nix 2.8's
// wording so differential tests can compare them; exit codes are the ones
// nix-build gives for the same failure (measured with Nix 2.8: see
// test/fixtures/build/failures.json): 100 an input rejected while preparing,
// 102 a fixed-output hash mismatch, 104 not deterministic, 1 a rejected
// output or bad input that Nix reports as a plain error.
import { defineError } from '../errors.js';

/** Base status of a failed build (Nix's worker mask 0x60 | 0x04). */
export const EXIT_BUILD_FAILED = 100;
export const EXIT_HASH_MISMATCH = 102;
export const EXIT_NOT_DETERMINISTIC = 104;
/**
 * An output the registration rejects (missing, bad permissions, a cycle, a
 * failed output check, ...): Nix 2.8 records BuildResult::OutputRejected,
 * which sets no bit of nix-build's exit status, so it exits with 1.
 */
export const EXIT_OUTPUT_REJECTED = 1;

// ---- desugaring ------------------------------------------------------------

/** `__json` is not valid JSON (Nix: "cannot process __json attribute of ..."). */
export class BadStructuredAttrs extends defineError('BadStructuredAttrs', 'E_BAD_STRUCTURED_ATTRS') {}
/** A derivation attribute of the wrong type ("must be a list of strings", "must be a Boolean", ...). */
export class BadDerivationAttr extends defineError('BadDerivationAttr', 'E_BAD_DERIVATION_ATTR') {}
/** Legacy exportReferencesGraph with an odd number of tokens. */
export class ExportReferencesGraphOddTokens extends defineError('ExportReferencesGraphOddTokens', 'E_EXPORT_REFERENCES_ODD_TOKENS') {
  override exitCode = EXIT_BUILD_FAILED;
}
/** Legacy exportReferencesGraph naming a file that is not `[A-Za-z_][A-Za-z0-9_.-]*` (Nix: a plain error, exit 1). */
export class ExportReferencesGraphBadFileName extends defineError('ExportReferencesGraphBadFileName', 'E_EXPORT_REFERENCES_BAD_FILE_NAME') {}
/** exportReferencesGraph naming something outside the store. */
export class ExportReferencesGraphNotStorePath extends defineError('ExportReferencesGraphNotStorePath', 'E_EXPORT_REFERENCES_NOT_STORE_PATH') {
  override exitCode = EXIT_BUILD_FAILED;
}
/** Structured exportReferencesGraph with a value that is not a store path (Nix: a plain error, exit 1). */
export class ExportReferencesGraphBadPath extends defineError('ExportReferencesGraphBadPath', 'E_EXPORT_REFERENCES_BAD_PATH') {}
/** exportReferencesGraph naming a store path outside the derivation's input closure. */
export class ExportReferencesNotInInputClosure extends defineError('ExportReferencesNotInInputClosure', 'E_EXPORT_REFERENCES_NOT_IN_INPUTS') {
  override exitCode = EXIT_BUILD_FAILED;
}
/** exportReferencesGraph reaching a derivation with outputs whose paths are not known (CA). */
export class ExportReferencesUnknownOutput extends defineError('ExportReferencesUnknownOutput', 'E_EXPORT_REFERENCES_UNKNOWN_OUTPUT') {}

// ---- pre-build hook ----------------------------------------------------------

export class PreBuildHookUnknownCommand extends defineError('PreBuildHookUnknownCommand', 'E_PRE_BUILD_HOOK_UNKNOWN_COMMAND') {}
export class PreBuildHookFailed extends defineError('PreBuildHookFailed', 'E_PRE_BUILD_HOOK_FAILED') {}

// ---- registering -------------------------------------------------------------

/** The builder did not create an output. */
export class OutputMissing extends defineError('OutputMissing', 'E_OUTPUT_MISSING') {
  override exitCode = EXIT_OUTPUT_REJECTED;
}
/** An output that is group/world-writable or owned by someone other than the build user. */
export class OutputBadPermissions extends defineError('OutputBadPermissions', 'E_OUTPUT_BAD_PERMISSIONS') {
  override exitCode = EXIT_OUTPUT_REJECTED;
}
/** Outputs that refer to each other in a cycle. */
export class ReferenceCycleInOutputs extends defineError('ReferenceCycleInOutputs', 'E_OUTPUT_REFERENCE_CYCLE') {
  override exitCode = EXIT_OUTPUT_REJECTED;
}
/** A fixed output whose content hash is not the one the derivation states (registered under its actual path first). */
export class FixedOutputHashMismatch extends defineError('FixedOutputHashMismatch', 'E_FIXED_OUTPUT_HASH_MISMATCH') {
  override exitCode = EXIT_HASH_MISMATCH;
}
/** A fixed output that refers to other store paths. */
export class FixedOutputHasReferences extends defineError('FixedOutputHasReferences', 'E_FIXED_OUTPUT_REFERENCES') {
  override exitCode = EXIT_OUTPUT_REJECTED;
}
/** A flat or text content-addressed output that is not a regular non-executable file. */
export class CaOutputNotRegularFile extends defineError('CaOutputNotRegularFile', 'E_CA_OUTPUT_NOT_REGULAR_FILE') {
  override exitCode = EXIT_OUTPUT_REJECTED;
}
/** A content-addressed output whose references its method cannot express (flat or text with a self-reference, ...). */
export class CaOutputIllegalReferences extends defineError('CaOutputIllegalReferences', 'E_CA_OUTPUT_ILLEGAL_REFERENCES') {
  override exitCode = EXIT_OUTPUT_REJECTED;
}
/** An output refers to (or requires) paths its output checks forbid. */
export class OutputCheckFailed extends defineError('OutputCheckFailed', 'E_OUTPUT_CHECK_FAILED') {
  override exitCode = EXIT_OUTPUT_REJECTED;
}
/** maxSize of outputChecks exceeded. */
export class OutputTooLarge extends defineError('OutputTooLarge', 'E_OUTPUT_TOO_LARGE') {
  override exitCode = EXIT_OUTPUT_REJECTED;
}
/** maxClosureSize of outputChecks exceeded. */
export class OutputClosureTooLarge extends defineError('OutputClosureTooLarge', 'E_OUTPUT_CLOSURE_TOO_LARGE') {
  override exitCode = EXIT_OUTPUT_REJECTED;
}
/** An output-check specifier that is neither a store path nor an output name. */
export class IllegalReferenceSpecifier extends defineError('IllegalReferenceSpecifier', 'E_ILLEGAL_REFERENCE_SPECIFIER') {
  override exitCode = EXIT_OUTPUT_REJECTED;
}
/** --check built an output that differs from the valid one. */
export class NotDeterministic extends defineError('NotDeterministic', 'E_NOT_DETERMINISTIC') {
  override exitCode = EXIT_NOT_DETERMINISTIC;
}
/** --check of a derivation whose outputs are not all valid. */
export class CheckNeedsValidOutputs extends defineError('CheckNeedsValidOutputs', 'E_CHECK_NEEDS_VALID_OUTPUTS') {}
/** The plan and the derivation disagree (an output without a scratch path, a deferred output). */
export class RegisterInternalError extends defineError('RegisterInternalError', 'E_REGISTER_INTERNAL') {
  override exitCode = EXIT_OUTPUT_REJECTED;
}
