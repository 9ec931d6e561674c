// Every command group, in the order `--help` lists them.
import type { Register } from './commands.js';
import { register as doctor } from './doctor.js';

export const registrations: Register[] = [doctor];
import { register as store } from './store.js';
import { register as pathInfo } from './path-info.js';
import { register as hash } from './hash.js';
registrations.push(store, pathInfo, hash);
import { register as build } from './build.js';
import { register as log } from './log.js';
import { register as derivation } from './derivation.js';
import { register as sandbox } from './sandbox.js';
registrations.push(build, log, derivation, sandbox);
import { register as daemon } from './daemon.js';
registrations.push(daemon);
