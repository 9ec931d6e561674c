// 1,000 sequential inner builds as the unprivileged test user (see recursive-load.ts).
import { innerBuildLoadTest } from './recursive-load.js';

innerBuildLoadTest('rootless');
