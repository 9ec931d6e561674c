// The worker-protocol daemon and client: public surface.
export { WorkerServer, SocketPathTooLong, ServerClosed, maxSocketPathBytes, type WorkerServerOptions, type ServerStats } from './server.js';
export {
  connectDaemon,
  WorkerClient,
  DaemonError,
  DaemonConnectionFailed,
  DaemonProtocolTooOld,
  narOfFile,
  type Endpoint,
  type LogEvent,
  type WorkerClientOptions,
  type AddToStoreArgs,
} from './client.js';
export {
  RestrictedStore,
  ALLOW_FIXED_OUTPUT_SETTING,
  type RestrictedStoreOptions,
} from './restricted-store.js';
export { DEFAULT_CLIENT_OPTIONS, parseContentAddressMethod, renderContentAddressMethod, type ConnectionEnd } from './connection.js';
export { DEFAULT_LIMITS, type WireLimits } from './wire.js';
export * from './protocol.js';
export type * from './store-api.js';
export { LocalStoreAdapter, type DaemonBuildFn } from './local-store-adapter.js';
export { LocalDaemon } from './local-daemon.js';
export { RemoteStore, openRemoteStore } from './remote-store.js';
export { makeDaemonBuild, makeEngineBuild, type EngineBuildOptions } from './build-engine.js';
export { peerCredentials, identityOf, identifyPeer, matchUser, decideAccess } from './peer-credentials.js';
