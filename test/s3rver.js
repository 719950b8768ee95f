// Starts @20minutes/s3rver (installed by mk/s3rver.sh) on 127.0.0.1 with the
// buckets named on the command line, for the S3 tests. It verifies SigV4
// signatures against its account S3RVER / S3RVER.
// Usage: node test/s3rver.js [--stdin] DIR BUCKET...   Prints "port N" once
// listening. With --stdin it exits when its stdin closes (a test that holds
// the pipe's other end); else its starter stops it.
'use strict';
const path = require('path');
const S3rver = require(path.join(__dirname, '..', 'build', 'node', 's3rver', 'node_modules',
                                 '@20minutes', 's3rver'));
const args = process.argv.slice(2);
const watchStdin = args[0] === '--stdin';
const [dir, ...buckets] = watchStdin ? args.slice(1) : args;
const server = new S3rver({
  address: '127.0.0.1', port: 0, silent: true, directory: dir,
  vhostBuckets: false, configureBuckets: buckets.map((name) => ({ name })),
});
server.run((err, addr) => {
  if (err) { console.error(err); process.exit(1); }
  process.stdout.write(`port ${addr.port}\n`);
});
if (watchStdin) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.resume();
}
