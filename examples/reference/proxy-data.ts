/**
 * smtp-server "XCLIENT/XFORWARD" (proxy data): a proxy listed in `xclientPeers` or `xforwardPeers` tells who its
 * client is. After `XCLIENT ADDR=…` the session starts over for that client: close middleware for the proxy's session,
 * then connect middleware for the client's.
 */
import { Effect } from "effect"
import { SmtpApp, SmtpSession } from "effect-smtp"

// #region smtp-server: XCLIENT/XFORWARD (proxy)
/** `useXClient: true, useXForward: true`, for the proxy at 192.0.2.10 only (anyone else gets 550 5.7.0). */
export const proxySettings = { xclientPeers: ["192.0.2.10"], xforwardPeers: ["192.0.2.10"] }

export const proxied = SmtpApp.empty.pipe(
  SmtpApp.onConnect((next) =>
    Effect.gen(function*() {
      const { xClient, xForward } = yield* SmtpSession.current
      if (xClient.has("ADDR")) {
        yield* Effect.log("Real client IP:", xClient.get("ADDR"))
        yield* Effect.log("Proxy IP:", xClient.get("ADDR:DEFAULT"))
      }
      if (xForward.has("ADDR")) yield* Effect.log("Forwarded from:", xForward.get("ADDR"))
      yield* next
    })
  )
)
// #endregion
