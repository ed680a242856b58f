/**
 * smtp-server "onSecure": the secure phase runs once TLS is up (after STARTTLS, or at once on an implicit TLS port),
 * and the session's `tls` has what smtp-server reads off the socket. There is no client certificate to read.
 */
import { Effect, Option } from "effect"
import { SmtpApp, SmtpSession } from "effect-smtp"

// #region smtp-server: onSecure
export const secure = SmtpApp.empty.pipe(
  SmtpApp.onSecure((next) =>
    Effect.gen(function*() {
      const { tls } = yield* SmtpSession.current // Some in the secure phase
      if (Option.isSome(tls)) {
        yield* Effect.log("TLS cipher:", tls.value.cipher)
        yield* Effect.log("TLS protocol:", tls.value.protocol)
        yield* Effect.log("Server name:", Option.getOrElse(tls.value.servername, () => "none"))
      }
      // The client certificate (socket.getPeerCertificate()) is not available: effect-smtp does not ask for one
      yield* next
    })
  )
)
// #endregion
