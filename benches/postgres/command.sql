-- One ticket command in the Postgres design, one transaction: the idempotency row
-- (unique on actor, endpoint, request), the ticket row locked and moved on, the audit
-- row and the transition row. pgbench runs it with -M prepared.
\set n random(1, :tickets)
BEGIN;
INSERT INTO idempotency_keys (actor_id, endpoint, request_id, request_hash, response_code, response_body)
  VALUES ('dispatcher-1', '/tickets/{id}/triage', gen_random_uuid()::text, encode(gen_random_bytes(32), 'hex'), 200,
          jsonb_build_object('ticket_id', md5(:n::text)::uuid, 'state', 'TRIAGED', 'priority', 'P2', 'summary', 'Compressor fault'));
SELECT state, version FROM tickets WHERE id = md5(:n::text)::uuid FOR UPDATE;
UPDATE tickets SET state = CASE state WHEN 'NEW' THEN 'TRIAGED' ELSE 'NEW' END, version = version + 1, updated_at = now()
  WHERE id = md5(:n::text)::uuid;
INSERT INTO audit_events (ticket_id, actor_id, actor_role, kind, payload)
  VALUES (md5(:n::text)::uuid, 'dispatcher-1', 'dispatcher', 'ticket.triaged',
          jsonb_build_object('priority', 'P2', 'reason', 'bench', 'request_id', :n::int));
INSERT INTO ticket_state_transitions (ticket_id, from_state, to_state, actor_id)
  VALUES (md5(:n::text)::uuid, 'NEW', 'TRIAGED', 'dispatcher-1');
END;
