// The time bounds of PostObject's form reading: the fields before the file must all arrive by
// a deadline however steadily a client trickles them (the body's idle timeout never fires for
// a byte every few seconds), the file itself is not under that deadline, and a waiting file
// stream can be cut from outside (the drain of a refused form).
import { expect, test } from "bun:test";
import { S3Error } from "../../../src/api/s3/errors";
import { readPostForm } from "../../../src/api/s3/form-data";

const BOUNDARY = "xYzBoundary";
const CT = `multipart/form-data; boundary=${BOUNDARY}`;
const enc = new TextEncoder();
const FIELDS = `--${BOUNDARY}\r\nContent-Disposition: form-data; name="key"\r\n\r\nuser/a.txt\r\n`;
const FILE_HEAD = `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n`;

/** A body that sends `head` at once, then one byte of `trickle` (repeated) every `everyMs`, never ending. */
function trickling(head: string, trickle: string, everyMs: number): { stream: ReadableStream<Uint8Array>; cancelled: () => boolean } {
  let cancelled = false;
  let sentHead = false;
  let i = 0;
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (!sentHead) {
          sentHead = true;
          controller.enqueue(enc.encode(head));
          return;
        }
        await Bun.sleep(everyMs);
        if (!cancelled) controller.enqueue(enc.encode(trickle[i++ % trickle.length]!));
      },
      cancel() {
        cancelled = true;
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, cancelled: () => cancelled };
}

test("form fields trickled a byte at a time are cut at the deadline with RequestTimeout, and the body is cancelled", async () => {
  // A field value that never ends: each byte comes well within any idle timeout.
  const body = trickling(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="policy"\r\n\r\n`, "abcdef", 20);
  const started = Date.now();
  const err = await readPostForm(body.stream, CT, started + 300).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(S3Error);
  expect((err as S3Error).code).toBe("RequestTimeout");
  expect((err as S3Error).status).toBe(400);
  expect(Date.now() - started).toBeLessThan(3_000);
  expect(body.cancelled()).toBe(true);
});

test("a silent body after the multipart headers is cut at the deadline too", async () => {
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(enc.encode(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="key"\r\n`));
    },
    pull: () => new Promise<void>(() => {}),
  });
  const err = await readPostForm(stream, CT, Date.now() + 200).catch((e: unknown) => e);
  expect((err as S3Error).code).toBe("RequestTimeout");
});

test("the deadline covers the fields only: a file slower than it still streams", async () => {
  const body = trickling(FIELDS + FILE_HEAD, "0123456789", 20);
  const { fields, file } = await readPostForm(body.stream, CT, Date.now() + 100);
  expect(fields.get("key")).toBe("user/a.txt");
  let got = "";
  const started = Date.now();
  for await (const c of file!.chunks) {
    got += new TextDecoder().decode(c);
    if (Date.now() - started > 400) break;
  }
  expect(got.length).toBeGreaterThan(5);
  expect(got).toBe("0123456789".repeat(100).slice(0, got.length));
});

test("cancel() stops a file stream that waits for bytes", async () => {
  const body = trickling(FIELDS + FILE_HEAD, "x", 60_000);
  const { file } = await readPostForm(body.stream, CT);
  setTimeout(() => file!.cancel(), 100);
  const started = Date.now();
  const err = await (async () => {
    for await (const _ of file!.chunks);
  })().catch((e: unknown) => e);
  expect(err).toBeInstanceOf(S3Error);
  expect(Date.now() - started).toBeLessThan(3_000);
  expect(body.cancelled()).toBe(true);
});
