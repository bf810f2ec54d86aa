-- Outbound delivery: endpoints, shared circuit breakers, the delivery attempt log.

CREATE TABLE endpoints (
    id         text PRIMARY KEY,
    endpoint   jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Registration order, exact even for endpoints created in the same instant.
    seq        bigserial NOT NULL
);

CREATE TABLE circuits (
    endpoint_id text PRIMARY KEY,
    circuit     jsonb NOT NULL
);

CREATE TABLE delivery_attempts (
    message_id       text NOT NULL,
    endpoint_id      text NOT NULL,
    attempt          integer NOT NULL,
    at_ms            bigint NOT NULL,
    status           integer,
    latency_ms       bigint NOT NULL,
    outcome          text NOT NULL,
    error            text,
    response_snippet text NOT NULL,
    seq              bigserial NOT NULL
);
CREATE INDEX delivery_attempts_by_message ON delivery_attempts (message_id, seq);
CREATE INDEX delivery_attempts_by_endpoint ON delivery_attempts (endpoint_id, seq);
