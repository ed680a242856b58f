/**
 * effect-smtp: an Effect-native SMTP server framework on top of smtp-server.
 */
export * as Middleware from "./phases/Middleware.ts"
export * as Reject from "./phases/Reject.ts"
export * as SmtpApp from "./phases/SmtpApp.ts"
export { SmtpRejection } from "./phases/Reject.ts"
export * as SmtpAddress from "./services/SmtpAddress.ts"
export { Credentials, MailFrom, Message, RcptTo } from "./services/PhaseInput.ts"
export { SmtpSession } from "./services/SmtpSession.ts"
export { SmtpTransaction } from "./services/SmtpTransaction.ts"
export { SmtpListenError, SmtpServer } from "./layers/SmtpServer.ts"
export { SmtpConfigError, SmtpServerConfig } from "./layers/SmtpServerConfig.ts"
export { MemoryMessages, MessageStore } from "./services/MessageStore.ts"
export { deliver } from "./plugins/deliver.ts"
