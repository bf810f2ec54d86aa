-- Ids compared as bytes, not as words of a language.
--
-- Event ids, lease tokens, idempotency keys and endpoint ids are opaque
-- strings. Under the database's default collation (C.UTF-8 and the like,
-- which PostgreSQL before 17 does not treat as "C") every comparison in
-- their indexes went through strcoll: the primary keys are compared on
-- every enqueue, every lease, every ack. Byte order is what these keys
-- mean, it is the order Rust's `String` and the other backends use, and it
-- is a plain memcmp.
ALTER TABLE jobs ALTER COLUMN id TYPE text COLLATE "C",
                 ALTER COLUMN lease_token TYPE text COLLATE "C";
ALTER TABLE attempts ALTER COLUMN job_id TYPE text COLLATE "C";
ALTER TABLE dead_letters ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE idempotency_keys ALTER COLUMN key TYPE text COLLATE "C",
                             ALTER COLUMN token TYPE text COLLATE "C";
ALTER TABLE endpoints ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE circuits ALTER COLUMN endpoint_id TYPE text COLLATE "C";
ALTER TABLE delivery_attempts ALTER COLUMN message_id TYPE text COLLATE "C",
                              ALTER COLUMN endpoint_id TYPE text COLLATE "C";
