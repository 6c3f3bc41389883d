-- The Postgres design dispatch replaces (the seeds' v0 schema, cut to what one ticket
-- command touches): a ticket row with its version, the idempotency keyspace
-- (actor, endpoint, request) with the stored answer, the audit trail and the state
-- transitions. Loaded by benches/vs-postgres.sh; :tickets rows to spread the locks.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
DROP TABLE IF EXISTS ticket_state_transitions, audit_events, idempotency_keys, tickets;
CREATE TABLE tickets (
  id uuid PRIMARY KEY,
  account_id text NOT NULL,
  site_id text NOT NULL,
  state text NOT NULL CHECK (state IN ('NEW','TRIAGED','SCHEDULED','DISPATCHED','ON_SITE','COMPLETED')),
  priority text NOT NULL,
  summary text NOT NULL,
  version integer NOT NULL DEFAULT 1,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tickets_queue ON tickets (state, priority, updated_at);
CREATE TABLE idempotency_keys (
  actor_id text NOT NULL,
  endpoint text NOT NULL,
  request_id text NOT NULL,
  request_hash text NOT NULL,
  response_code integer NOT NULL,
  response_body jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (actor_id, endpoint, request_id)
);
CREATE TABLE audit_events (
  id bigserial PRIMARY KEY,
  ticket_id uuid NOT NULL REFERENCES tickets (id),
  actor_id text NOT NULL,
  actor_role text NOT NULL,
  kind text NOT NULL,
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_ticket ON audit_events (ticket_id, id);
CREATE TABLE ticket_state_transitions (
  id bigserial PRIMARY KEY,
  ticket_id uuid NOT NULL REFERENCES tickets (id),
  from_state text NOT NULL,
  to_state text NOT NULL,
  actor_id text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ticket_state_transitions_ticket ON ticket_state_transitions (ticket_id, id);
-- Ticket n has id md5(n)::uuid, so the command script can name one without a lookup.
INSERT INTO tickets (id, account_id, site_id, state, priority, summary)
SELECT md5(n::text)::uuid, 'acct-' || (n % 50), 'site-' || (n % 200), 'NEW', 'P2', 'Compressor fault at store ' || n
FROM generate_series(1, :tickets) AS n;
VACUUM ANALYZE;
