-- One pipeline: jobs, dead letters, the attempt log and idempotency keys.
-- Applied inside the pipeline's own schema (the connection's search_path).

CREATE TABLE jobs (
    id           text PRIMARY KEY,
    seq          bigserial NOT NULL,
    payload      bytea NOT NULL,
    metadata     jsonb NOT NULL DEFAULT '{}',
    -- ready (waiting for run_at), leased, completed, dead
    status       text NOT NULL,
    run_at       timestamptz NOT NULL DEFAULT now(),
    attempt      integer NOT NULL DEFAULT 0,
    lease_token  text,
    leased_at    timestamptz,
    lease_until  timestamptz,
    last_error   text,
    enqueued_at  timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);

-- Partial indexes stay as small as the work in each state, whatever the
-- table's size; the lease scans only ready rows in order. Every status change
-- is a non-HOT update that writes each matching index, so there is no index
-- for completed rows: pruning them scans, every maintenance interval, rather
-- than every ack paying for an index entry.
CREATE INDEX jobs_ready ON jobs (run_at, seq) WHERE status = 'ready';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE status = 'leased';

CREATE TABLE dead_letters (
    id               text PRIMARY KEY,
    payload          bytea NOT NULL,
    metadata         jsonb NOT NULL,
    enqueued_at      timestamptz NOT NULL,
    attempts         integer NOT NULL,
    reason           text NOT NULL,
    dead_lettered_at timestamptz NOT NULL DEFAULT now(),
    -- pending, replayed
    state            text NOT NULL
);
CREATE INDEX dead_letters_order ON dead_letters (dead_lettered_at, id);

-- Every processing attempt: what an operator reads to see an event's history.
CREATE TABLE attempts (
    job_id      text NOT NULL,
    attempt     integer NOT NULL,
    -- completed, retrying, dead_lettered
    outcome     text NOT NULL,
    error       text,
    duration_ms bigint NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
);
-- Attempt rows go when their job is pruned (by job id), so no time index.
CREATE INDEX attempts_by_job ON attempts (job_id, finished_at);

CREATE TABLE idempotency_keys (
    key        text PRIMARY KEY,
    -- the holder's token while in progress; NULL once completed
    token      text,
    completed  boolean NOT NULL DEFAULT false,
    expires_at timestamptz NOT NULL
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- A queue table turns over constantly: vacuum it early so dead row versions
-- do not pile up and slow the lease scan down.
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
                      autovacuum_vacuum_cost_delay = 0);
ALTER TABLE idempotency_keys SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);

-- Lease in one round trip: first rescue leases past their deadline (a
-- compare-and-set on status and deadline, so a job acked meanwhile is never
-- reverted), then take the oldest ready jobs, skipping rows other workers
-- have locked.
CREATE FUNCTION lease_jobs(max_jobs integer, lease_ms bigint)
RETURNS TABLE (id text, seq bigint, payload bytea, metadata jsonb, attempt integer,
               enqueued_at_ms bigint, last_error text, lease_token text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    UPDATE jobs j SET status = 'ready', lease_token = NULL, lease_until = NULL
    WHERE j.id IN (SELECT r.id FROM jobs r
                   WHERE r.status = 'leased' AND r.lease_until <= now()
                   ORDER BY r.lease_until LIMIT 1000
                   FOR UPDATE SKIP LOCKED)
      AND j.status = 'leased' AND j.lease_until <= now();

    RETURN QUERY
    WITH picked AS (
        SELECT r.id FROM jobs r
        WHERE r.status = 'ready' AND r.run_at <= now()
        ORDER BY r.run_at, r.seq
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    )
    UPDATE jobs j
    SET status = 'leased', attempt = j.attempt + 1, lease_token = gen_random_uuid()::text,
        leased_at = clock_timestamp(), lease_until = now() + lease_ms * interval '1 millisecond'
    FROM picked
    WHERE j.id = picked.id
    RETURNING j.id, j.seq, j.payload, j.metadata, j.attempt,
              (extract(epoch FROM j.enqueued_at) * 1000)::bigint, j.last_error, j.lease_token;
END
$$;
