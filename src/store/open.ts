// Opening the store a command works on, from the resolved location.
import type { Settings } from '../config/settings.js';
import type { StoreLocation } from '../config/store-location.js';
import { defineError } from '../errors.js';
import { LocalStore, storeSettingsFrom, type OpenStoreOptions } from './local-store.js';

export class DaemonStoreUnsupported extends defineError('DaemonStoreUnsupported', 'E_DAEMON_STORE_UNSUPPORTED') {}

/** Opens the local store at `location` (creating it on first use). */
export async function openStore(location: StoreLocation, settings: Settings | null, opts: OpenStoreOptions = {}): Promise<LocalStore> {
  if (location.kind !== 'local') {
    throw new DaemonStoreUnsupported(`this command needs a local store, not the daemon at '${location.socket}'`, {
      socket: location.socket,
    });
  }
  return LocalStore.open(location, storeSettingsFrom(settings, opts.settings), opts);
}
