-- Delivery attempts are pruned by age (PostgresConfig::attempt_retention).
--
-- Rows arrive in the order of their `at_ms`, give or take the few
-- milliseconds between an attempt's end and its batch's insert, so a BRIN
-- index (one summary per range of pages) finds the old ones at almost no
-- cost per insert; a B-tree would add one more index insert to every
-- delivery.
CREATE INDEX delivery_attempts_by_time ON delivery_attempts USING brin (at_ms)
    WITH (autosummarize = on);
