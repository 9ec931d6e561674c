// 1,000 sequential inner builds as the current user (see recursive-load.ts).
import { innerBuildLoadTest } from './recursive-load.js';

innerBuildLoadTest('current');
