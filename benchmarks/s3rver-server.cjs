// Runs s3rver (the npm peer we compare against) under Node in its own process:
//   node benchmarks/s3rver-server.cjs <port> <directory> <bucket>[,<bucket>...]
// Prints "ready" on stdout once it listens. Credentials are s3rver's defaults (S3RVER/S3RVER).
"use strict";
const S3rver = require("s3rver");

const [port, directory, buckets] = process.argv.slice(2);
const server = new S3rver({
  port: Number(port),
  address: "127.0.0.1",
  directory,
  silent: process.env.S3RVER_VERBOSE !== "1",
  configureBuckets: (buckets || "").split(",").filter(Boolean).map((name) => ({ name })),
});
server.run().then(
  () => process.stdout.write("ready\n"),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
process.on("SIGTERM", () => server.close().finally(() => process.exit(0)));
