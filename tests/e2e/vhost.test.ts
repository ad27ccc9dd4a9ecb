// Virtual-hosted-style requests (bucket in the Host header) when [s3_api] root_domain is set,
// and path-style requests on the same server.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startServer, type TestServer } from "../helpers/server";
import { signedFetch } from "../helpers/signed";

let server: TestServer;
const ROOT_DOMAIN = "s3.bunker.test";

/** Signs and sends a request to the server with an explicit Host header. */
function send(method: string, host: string, target: string, body?: string): Promise<Response> {
  return signedFetch(server, method, target, { host, body });
}

beforeAll(async () => {
  server = await startServer({ extraToml: "" });
  // root_domain goes in [s3_api]: append it to the config and restart.
  const toml = await Bun.file(server.configPath).text();
  await Bun.write(server.configPath, toml.replace("[s3_api]", `[s3_api]\nroot_domain = "${ROOT_DOMAIN}"`));
  await server.kill();
  await server.restart();
});

afterAll(async () => {
  await server?.stop();
});

test("bucket named by the Host header", async () => {
  const host = `vbucket.${ROOT_DOMAIN}:${server.s3Port}`;
  expect((await send("PUT", host, "/")).status).toBe(200);
  expect((await send("PUT", host, "/dir/hello.txt", "hello vhost")).status).toBe(200);
  const get = await send("GET", host, "/dir/hello.txt");
  expect(get.status).toBe(200);
  expect(await get.text()).toBe("hello vhost");
  const list = await send("GET", host, "/?list-type=2");
  expect(await list.text()).toContain("<Key>dir/hello.txt</Key>");
});

test("path style still works next to virtual hosts", async () => {
  const get = await send("GET", `127.0.0.1:${server.s3Port}`, "/vbucket/dir/hello.txt");
  expect(get.status).toBe(200);
  expect(await get.text()).toBe("hello vhost");
});

test("an unknown bucket in the Host header is NoSuchBucket", async () => {
  const r = await send("GET", `nope-bucket.${ROOT_DOMAIN}`, "/x");
  expect(r.status).toBe(404);
  expect(await r.text()).toContain("<Code>NoSuchBucket</Code>");
});
