// Every command group, in the order `--help` lists them.
import type { Register } from './commands.js';
import { register as doctor } from './doctor.js';

export const registrations: Register[] = [doctor];
