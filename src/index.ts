/**
 * effect-smtp: an Effect-native SMTP server framework on top of smtp-server.
 *
 * An app (`SmtpApp`) is the middleware of each SMTP phase; `SmtpServer.layer`
 * serves it with the settings of `SmtpServerConfig`. The inputs of a phase are
 * services (`MailFrom`, `RcptTo`, `Credentials`, `Message`), rejections are
 * typed (`Reject`), success replies can be worded (`Accept`), and the plugins,
 * the Maildir store and the session and envelope types are all here to
 * assemble a mail server from.
 */
export type { DataError, Middleware } from "./phases/Middleware.ts"
export * as Accept from "./phases/Accept.ts"
export { PhaseReply, SmtpReply } from "./phases/Accept.ts"
export * as Reject from "./phases/Reject.ts"
export { MessageTooLarge, SmtpRejection } from "./phases/Reject.ts"
export type { PermanentCode, TemporaryCode } from "./phases/Reject.ts"
export * as SmtpApp from "./phases/SmtpApp.ts"
export type { Phase, StateBuilder, UserKey } from "./phases/SmtpApp.ts"
export * as SmtpAddress from "./services/SmtpAddress.ts"
export { Mailbox } from "./services/SmtpAddress.ts"
export type { MailFromAddress, MailParams, RcptParams, RcptToAddress } from "./services/SmtpAddress.ts"
export { Credentials, MailFrom, Message, RcptTo, TlsSession, Username } from "./services/PhaseInput.ts"
export { SmtpSession } from "./services/SmtpSession.ts"
export type { PeerCertificate, State as SessionState, Tls as SessionTls, TranscriptLine } from "./services/SmtpSession.ts"
export { SmtpTransaction } from "./services/SmtpTransaction.ts"
export type { Envelope, State as TransactionState } from "./services/SmtpTransaction.ts"
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
export * as PolicyMemory from "./layers/PolicyMemory.ts"
export * as SmtpMetrics from "./layers/SmtpMetrics.ts"
export { deliver } from "./plugins/deliver.ts"
export { accessList } from "./plugins/accessList.ts"
export type { Options as AccessListOptions } from "./plugins/accessList.ts"
export { authUsers } from "./plugins/authUsers.ts"
export { failureInjection } from "./plugins/failureInjection.ts"
export type { Percent as FailurePercent, Rule as FailureRule } from "./plugins/failureInjection.ts"
export { greylisting } from "./plugins/greylisting.ts"
export type { Options as GreylistingOptions } from "./plugins/greylisting.ts"
export { localMailboxes, localRecipients } from "./plugins/localRecipients.ts"
export type { Options as LocalRecipientsOptions } from "./plugins/localRecipients.ts"
export { rateLimits } from "./plugins/rateLimits.ts"
export type { Limit as RateLimit, Options as RateLimitsOptions } from "./plugins/rateLimits.ts"
export { receivedHeader } from "./plugins/receivedHeader.ts"
export { requireTls } from "./plugins/requireTls.ts"
export type { Options as RequireTlsOptions } from "./plugins/requireTls.ts"
export { senderRules } from "./plugins/senderRules.ts"
export type { Options as SenderRulesOptions } from "./plugins/senderRules.ts"
export type { OnStoreFailure } from "./internal/PolicyStore.ts"
export { MailboxLookupError, Mailboxes } from "./services/Mailboxes.ts"
export { hashPassword, Users, UsersError, verifyPassword } from "./services/Users.ts"
