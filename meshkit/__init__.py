"""The generic gRPC service kit every service is built on: the runtime (server bootstrap, health,
reflection, pools, channels, graceful stop), the settings base, errors and their statuses, the
interceptors (call facts, telemetry, time limits, rate limits), bearer-token auth, ids, page
tokens, the outbox and stream consumers, metrics and logs. It names no service, method or social
rule: those are the services' own and the social package's."""
