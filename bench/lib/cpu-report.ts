// Preloaded with `node --import` into a drvbox process by the suite: at exit
// it writes that process's own CPU time and peak RSS (not its children's) to
// $DRVBOX_BENCH_CPU_OUT, so drvbox's overhead per derivation can be told
// apart from the launcher's and the builders'.
import { writeFileSync } from 'node:fs';

const out = process.env.DRVBOX_BENCH_CPU_OUT;
if (out) {
  process.on('exit', () => {
    const u = process.cpuUsage();
    writeFileSync(out, JSON.stringify({ userMs: u.user / 1000, sysMs: u.system / 1000, maxRssMB: process.resourceUsage().maxRSS / 1024 }));
  });
}
