-- Query plans that do not depend on the statistics of a table that turns
-- over constantly.
--
-- A queue table's statistics are always stale: the last ANALYZE may have
-- seen no leased rows while a thousand are leased now. With such estimates
-- the planner chose, for a fenced change of ONE job, a scan of the whole
-- `jobs_leased` index (it looked cheaper than the primary key), and for the
-- lease a hash join over a sequential scan of the table. Both grow with the
-- queue, so every ack paid for every other lease.
--
-- The fence is the lease token: set when a job is leased, cleared by every
-- change out of 'leased'. The constraint below makes that a rule of the
-- table, so fenced statements match on id and token alone, and no partial
-- index's predicate can be proved for them: the primary key is the only
-- index they can use.
ALTER TABLE jobs ADD CONSTRAINT lease_token_only_while_leased
    CHECK ((status = 'leased') = (lease_token IS NOT NULL));

-- The lease locks the oldest ready rows and updates exactly those row
-- versions by their physical address (a TID scan): no join whose strategy
-- depends on estimates. A row locked FOR UPDATE cannot move before we change
-- it, and the lock re-checked the condition on its newest version, so the
-- outer UPDATE needs no second filter (which would let the planner pick an
-- index again).
CREATE OR REPLACE FUNCTION lease_jobs(max_jobs integer, lease_ms bigint)
RETURNS TABLE (id text, seq bigint, payload bytea, metadata jsonb, attempt integer,
               enqueued_at_ms bigint, last_error text, lease_token text)
LANGUAGE plpgsql
-- A plan cached while the table was nearly empty scans it whole (cheaper
-- then than the TID scan); kept as the table grows, that costs every lease
-- the size of the table. There is no other way in than by address. One
-- generic plan, made once per connection: replanning on every call cost a
-- quarter of the server's time.
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    UPDATE jobs j SET status = 'ready', lease_token = NULL, lease_until = NULL
    WHERE j.ctid = ANY(ARRAY(SELECT r.ctid FROM jobs r
                             WHERE r.status = 'leased' AND r.lease_until <= now()
                             ORDER BY r.lease_until LIMIT 1000
                             FOR UPDATE SKIP LOCKED));

    RETURN QUERY
    UPDATE jobs j
    SET status = 'leased', attempt = j.attempt + 1, lease_token = gen_random_uuid()::text,
        leased_at = clock_timestamp(), lease_until = now() + lease_ms * interval '1 millisecond'
    WHERE j.ctid = ANY(ARRAY(SELECT r.ctid FROM jobs r
                             WHERE r.status = 'ready' AND r.run_at <= now()
                             ORDER BY r.run_at, r.seq
                             LIMIT max_jobs
                             FOR UPDATE SKIP LOCKED))
    RETURNING j.id, j.seq, j.payload, j.metadata, j.attempt,
              (extract(epoch FROM j.enqueued_at) * 1000)::bigint, j.last_error, j.lease_token;
END
$$;

-- Fenced ack of a batch, logging each attempt; returns the acked ids. Each
-- job is found by its primary key (the fence is id and token, see above),
-- never by a scan that a small table's plan might have chosen.
CREATE FUNCTION ack_jobs(ids text[], tokens text[])
RETURNS SETOF text
-- plpgsql, not sql: a sql function is parsed and planned on every call.
LANGUAGE plpgsql
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
RETURN QUERY
WITH input AS (SELECT * FROM unnest(ids, tokens) AS t(id, token)),
done AS (
    UPDATE jobs j
    SET status = 'completed', completed_at = now(), payload = '\x'::bytea,
        lease_token = NULL, lease_until = NULL
    FROM input
    WHERE j.id = ANY(ids) AND j.id = input.id
      AND j.lease_token = input.token AND j.lease_until > now()
    RETURNING j.id, j.attempt, j.leased_at
),
logged AS (
    INSERT INTO attempts (job_id, attempt, outcome, duration_ms)
    SELECT id, attempt, 'completed', (extract(epoch FROM clock_timestamp() - leased_at) * 1000)::bigint FROM done
)
SELECT done.id FROM done;
END
$$;
