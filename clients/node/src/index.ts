// Typed Node.js client for provider_router.v1.RouterService.
//
// Uses Connect's gRPC transport (HTTP/2), so it talks to the Python grpc.aio server directly.
// Every call takes an optional `timeoutMs`: the gRPC deadline the router spends across its
// whole failover chain.
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { RouterService } from "./gen/provider_router/v1/router_pb.js";

export * from "./gen/provider_router/v1/router_pb.js";

/** Options for createRouterClient. */
export interface RouterClientOptions {
  /** Server address, e.g. "http://127.0.0.1:50051" (https:// for TLS). */
  baseUrl: string;
  /** API key sent as `authorization: Bearer <key>`. */
  apiKey?: string;
}

/** A typed RouterService client: route, chat, streamChat, register, ... */
export type RouterClient = Client<typeof RouterService>;

/** Create a RouterService client over gRPC. */
export function createRouterClient(options: RouterClientOptions): RouterClient {
  const interceptors: Interceptor[] = [];
  if (options.apiKey) {
    const header = `Bearer ${options.apiKey}`;
    interceptors.push((next) => async (request) => {
      request.header.set("authorization", header);
      return next(request);
    });
  }
  const transport = createGrpcTransport({ baseUrl: options.baseUrl, interceptors });
  return createClient(RouterService, transport);
}
