// End-to-end smoke check of the Node client against a running server:
//   node dist/smoke.js http://127.0.0.1:50051
// Exits non-zero when any call fails or returns something unexpected.
import { create } from "@bufbuild/protobuf";
import {
  ChatMessageSchema,
  Role,
  createRouterClient,
} from "./index.js";

async function main(): Promise<void> {
  const baseUrl = process.argv[2] ?? "http://127.0.0.1:50051";
  const client = createRouterClient({ baseUrl });
  const messages = [create(ChatMessageSchema, { role: Role.USER, content: "hello from node" })];

  const listing = await client.listProviders({}, { timeoutMs: 5000 });
  if (listing.providers.length === 0) throw new Error("no providers listed");

  const decision = await client.route({}, { timeoutMs: 5000 });
  if (!decision.provider) throw new Error("route chose no provider");

  const answer = await client.chat({ messages }, { timeoutMs: 10000 });
  if (!answer.message?.content.includes("hello from node")) {
    throw new Error(`unexpected chat answer: ${answer.message?.content}`);
  }

  let text = "";
  let ended = false;
  for await (const event of client.streamChat({ messages }, { timeoutMs: 10000 })) {
    if (event.event.case === "delta") text += event.event.value.text;
    if (event.event.case === "end") ended = true;
  }
  if (!ended || text !== answer.message.content) throw new Error("stream did not match chat");

  console.log(JSON.stringify({ provider: answer.provider, model: answer.model, text }));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
