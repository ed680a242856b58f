/**
 * effect-smtp: an Effect-native SMTP server framework on top of smtp-server.
 *
 * An app (`SmtpApp`) is the middleware of each SMTP phase; `SmtpServer.layer`
 * serves it with the settings of `SmtpServerConfig`. The inputs of a phase are
 * services (`MailFrom`, `RcptTo`, `Credentials`, `Message`), rejections are
 * typed (`Reject`), and the plugins, the Maildir store and the session and
 * envelope types are all here to assemble a mail server from.
 */
export type { Middleware } from "./phases/Middleware.ts"
export * as Reject from "./phases/Reject.ts"
export { SmtpRejection } from "./phases/Reject.ts"
export * as SmtpApp from "./phases/SmtpApp.ts"
export * as SmtpAddress from "./services/SmtpAddress.ts"
export { Credentials, MailFrom, Message, RcptTo } from "./services/PhaseInput.ts"
export { SmtpSession } from "./services/SmtpSession.ts"
export type { State as SessionState, Tls as SessionTls } from "./services/SmtpSession.ts"
export { SmtpTransaction } from "./services/SmtpTransaction.ts"
export type { Envelope } from "./services/SmtpTransaction.ts"
export { MemoryMessages, MessageStore, StorageError } from "./services/MessageStore.ts"
export type { Delivery, StoredMessage } from "./services/MessageStore.ts"
export { SmtpListenError, SmtpServer, SmtpServerVersionError } from "./layers/SmtpServer.ts"
export { SmtpConfigError, SmtpServerConfig } from "./layers/SmtpServerConfig.ts"
export type {
  ConfigOptions as SmtpServerConfigReadOptions,
  Options as SmtpServerOptions,
  Settings as SmtpServerSettings,
  TlsCertificate
} from "./layers/SmtpServerConfig.ts"
export * as Maildir from "./layers/Maildir.ts"
export { deliver } from "./plugins/deliver.ts"
export { localDomains } from "./plugins/localDomains.ts"
export { staticUsers } from "./plugins/staticUsers.ts"
