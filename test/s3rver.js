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
// s3rver signs virtual-host requests with the bucket put back in front of the
// canonical URI (a SigV2 habit); AWS's SigV4 uses the path as sent. For
// "<bucket>.s3.localhost" requests the canonical URI is put back to the path
// as sent, so that the signature is checked the way AWS checks it.
const v4 = require(path.join(__dirname, '..', 'build', 'node', 's3rver', 'node_modules',
                             '@20minutes', 's3rver', 'lib', 'signature', 'v4'));
const stringToSign = v4.getStringToSign;
v4.getStringToSign = function (req, sig) {
  const m = /^([a-z0-9.-]+)\.s3\.localhost(:\d+)?$/.exec(req.headers.host || '');
  if (m && (req.uri === `/${m[1]}` || req.uri.startsWith(`/${m[1]}/`))) {
    req = { ...req, uri: req.uri.slice(m[1].length + 1) || '/' };
  }
  return stringToSign(req, sig);
};
const args = process.argv.slice(2);
const watchStdin = args[0] === '--stdin';
const [dir, ...buckets] = watchStdin ? args.slice(1) : args;
const server = new S3rver({
  address: '127.0.0.1', port: 0, silent: true, directory: dir,
  // Virtual-host requests: "<bucket>.s3.localhost" (libcurl resolves every
  // *.localhost name to loopback, RFC 6761); IP and plain "localhost" hosts
  // stay path style.
  serviceEndpoint: 'localhost', vhostBuckets: false, configureBuckets: buckets.map((name) => ({ name })),
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
