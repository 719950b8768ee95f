// Starts Azurite's Blob service (installed by mk/azurite.sh) on 127.0.0.1 with
// telemetry off (nothing leaves the machine), for the Azure Blob tests. It
// checks Shared Key signatures for its account devstoreaccount1.
// Usage: node test/azurite.js [--stdin] DIR [AZURITE-ARGS...]   Prints "port N"
// once listening. AZURITE-ARGS are passed on (e.g. --cert C --key K --oauth
// basic: HTTPS with bearer tokens checked for issuer, audience and lifetime).
// With --stdin it stops Azurite and exits when its stdin closes.
'use strict';
const path = require('path');
const { spawn } = require('child_process');
const args = process.argv.slice(2);
const watchStdin = args[0] === '--stdin';
const dir = watchStdin ? args[1] : args[0];
const extra = args.slice(watchStdin ? 2 : 1);
const bin = path.join(__dirname, '..', 'build', 'node', 'azurite', 'node_modules', '.bin',
                      'azurite-blob');
const child = spawn(bin, ['--blobHost', '127.0.0.1', '--blobPort', '0', '--location', dir,
                          '--disableTelemetry', '--skipApiVersionCheck', ...extra],
                    { stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
child.stdout.on('data', (d) => {
  out += d.toString();
  const m = /listens on https?:\/\/127\.0\.0\.1:(\d+)/.exec(out);
  if (m) {
    process.stdout.write(`port ${m[1]}\n`);
    out = '';
    child.stdout.removeAllListeners('data');
    child.stdout.resume();
  }
});
let stopping = false;
child.on('exit', (code) => process.exit(stopping ? 0 : code === null ? 1 : code));
const stop = () => { stopping = true; child.kill('SIGTERM'); setTimeout(() => process.exit(0), 2000).unref(); };
process.on('SIGTERM', stop);
if (watchStdin) {
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();
}
