-- The trace context (W3C traceparent) of the change an event announces, when tracing is on
-- (meshkit.tracing): relayed with the event, so that its consumers' spans join the change's trace.
ALTER TABLE outbox ADD COLUMN trace_context text;
