// The public surface of the pure codecs. Import from here outside src/format.
export * from './nix32.js';
export * from './hash.js';
export * from './store-path.js';
export * from './derivation.js';
export * from './aterm.js';
export * from './derivation-json.js';
export * from './hash-modulo.js';
