/**
 * smtp-server "onSecure": the secure phase runs once TLS is up (after STARTTLS, or at once on an implicit TLS port),
 * with what smtp-server reads off the socket as its input, `TlsSession`. A client certificate is there when the
 * `requestClientCertificate` setting asks for one; it stays on the session (`tls.peerCertificate`) for later phases.
 */
import { Effect, Option } from "effect"
import { SmtpApp, TlsSession } from "effect-smtp"

// #region smtp-server: onSecure
export const secure = SmtpApp.empty.pipe(
  SmtpApp.onSecure((next) =>
    Effect.gen(function*() {
      const tls = yield* TlsSession
      yield* Effect.log("TLS cipher:", tls.cipher)
      yield* Effect.log("TLS protocol:", tls.protocol)
      yield* Effect.log("Server name:", Option.getOrElse(tls.servername, () => "none"))
      // Verify client certificate if provided
      if (Option.isSome(tls.peerCertificate)) yield* Effect.log("Client cert:", tls.peerCertificate.value.subject)
      yield* next
    })
  )
)
// #endregion
