"""The canonical ticket lifecycle through a client generated from /v1/openapi.json
(openapi-python-client): if the document is wrong, this does not type-check, does not
serialize, or does not parse the answers.

Environment: DISPATCH_URL, and DISPATCH_TOKENS, a JSON object of bearer tokens by
role (dispatcher, manager, technician, qa, billing); the technician is `tech-1`.
Prints each state reached; exits non-zero on the first unexpected answer.
"""
import datetime
import json
import os
import sys
import uuid

from dispatch_client import AuthenticatedClient
from dispatch_client.api.evidence import blob_upload
from dispatch_client.api.tickets import (
    approval_decide, assignment_dispatch, billing_generate_invoice, closeout_add_evidence,
    incident_templates_list, qa_verify, schedule_confirm, schedule_propose, tech_check_in,
    tech_complete, tech_request_change, ticket_close, ticket_create, ticket_get, ticket_triage,
)
from dispatch_client.models import (
    AddEvidence, ApprovalDecision, Complete, CompleteChecklist, ConfirmSchedule, CreateTicket,
    DecideApproval, DispatchAssignment, Empty, GenerateInvoice, ProposeSchedule, RequestChange,
    Ticket, TicketState, Triage, TriageOutcome, Verify, Window,
)
from dispatch_client.models.create_ticket_incident_type import CreateTicketIncidentType
from dispatch_client.types import File

URL = os.environ["DISPATCH_URL"]
TOKENS = json.loads(os.environ["DISPATCH_TOKENS"])


def client(role):
    return AuthenticatedClient(base_url=URL, token=TOKENS[role], raise_on_unexpected_status=True)


def expect(response, state):
    """The typed answer of a command: a Ticket in `state`."""
    ticket = response.parsed
    if not isinstance(ticket, Ticket):
        sys.exit(f"expected a Ticket in {state}, got {response.status_code}: {response.content!r}")
    if ticket.state != state:
        sys.exit(f"expected {state}, got {ticket.state}")
    print(ticket.state.value)
    return ticket


def key():
    return str(uuid.uuid4())


def evidence(technician, ticket_id, kind, evidence_key, payload):
    stored = blob_upload.sync(client=technician, body=File(payload=payload, mime_type="application/octet-stream"))
    body = AddEvidence(kind=kind, uri=stored.uri, evidence_key=evidence_key)
    return closeout_add_evidence.sync_detailed(client=technician, id=ticket_id, body=body, idempotency_key=key())


def main():
    dispatcher, manager, technician = client("dispatcher"), client("manager"), client("technician")
    qa, billing = client("qa"), client("billing")
    templates = incident_templates_list.sync(client=dispatcher).to_dict()["templates"]
    lockout = next(t for t in templates if t["incident_type"] == "LOCKOUT")

    body = CreateTicket(account_id="acct-1", site_id="site-1", incident_type=CreateTicketIncidentType.LOCKOUT,
                        summary="door will not lock")
    ticket = expect(ticket_create.sync_detailed(client=dispatcher, body=body, idempotency_key=key()), TicketState.NEW)
    tid = ticket.id
    triage = Triage(workflow_outcome=TriageOutcome.READY_TO_SCHEDULE)
    expect(ticket_triage.sync_detailed(client=dispatcher, id=tid, body=triage, idempotency_key=key()),
           TicketState.READY_TO_SCHEDULE)
    start = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(days=1)
    window = Window(start=start, end=start + datetime.timedelta(hours=2))
    expect(schedule_propose.sync_detailed(client=dispatcher, id=tid, body=ProposeSchedule(windows=[window]),
                                          idempotency_key=key()), TicketState.SCHEDULE_PROPOSED)
    expect(schedule_confirm.sync_detailed(client=dispatcher, id=tid, body=ConfirmSchedule(window=window),
                                          idempotency_key=key()), TicketState.SCHEDULED)
    expect(assignment_dispatch.sync_detailed(client=dispatcher, id=tid,
                                             body=DispatchAssignment(technician_id="tech-1"),
                                             idempotency_key=key()), TicketState.DISPATCHED)
    expect(tech_check_in.sync_detailed(client=technician, id=tid, body=Empty(), idempotency_key=key()),
           TicketState.IN_PROGRESS)
    change = RequestChange(reason="strike plate cracked", change_summary="replace the strike plate")
    expect(tech_request_change.sync_detailed(client=technician, id=tid, body=change, idempotency_key=key()),
           TicketState.APPROVAL_REQUIRED)
    decision = DecideApproval(decision=ApprovalDecision.APPROVED, reason="within budget")
    expect(approval_decide.sync_detailed(client=manager, id=tid, body=decision, idempotency_key=key()),
           TicketState.IN_PROGRESS)
    for evidence_key in lockout["required_evidence_keys"]:
        expect(evidence(technician, tid, "photo", evidence_key, evidence_key.encode()), TicketState.IN_PROGRESS)
    expect(evidence(technician, tid, "signature", "customer_signature", b"signed"), TicketState.IN_PROGRESS)
    checklist = CompleteChecklist.from_dict({item: True for item in lockout["checklist"]})
    complete = Complete(checklist=checklist)
    expect(tech_complete.sync_detailed(client=technician, id=tid, body=complete, idempotency_key=key()),
           TicketState.COMPLETED_PENDING_VERIFICATION)
    expect(qa_verify.sync_detailed(client=qa, id=tid, body=Verify(notes="photos match"), idempotency_key=key()),
           TicketState.VERIFIED)
    invoice = GenerateInvoice(amount_cents=18500, currency="USD")
    expect(billing_generate_invoice.sync_detailed(client=billing, id=tid, body=invoice, idempotency_key=key()),
           TicketState.INVOICED)
    expect(ticket_close.sync_detailed(client=billing, id=tid, body=Empty(), idempotency_key=key()),
           TicketState.CLOSED)
    final = ticket_get.sync(client=dispatcher, id=tid)
    print(f"read back: {final.state.value}")


if __name__ == "__main__":
    main()
