// Failures of the unsandboxed backend's held start (startHeldNone in run.ts).
import { defineError } from '../../src/errors.js';

/** startHeld() where builders do not run in a PID namespace here (process groups, one-shot launcher, no launcher). */
export class HeldBuildUnavailable extends defineError('HeldBuildUnavailable', 'E_HELD_BUILD_UNAVAILABLE') {}
/** removePaths() on an unsandboxed build: the builder sees the host's whole store. */
export class HeldBuildCannotHide extends defineError('HeldBuildCannotHide', 'E_HELD_BUILD_CANNOT_HIDE') {}
/** The launcher did not get to the hold (its message is in `detail`). */
export class HeldBuildSetupFailed extends defineError('HeldBuildSetupFailed', 'E_HELD_BUILD_SETUP_FAILED') {}
