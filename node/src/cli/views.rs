//! The read models people use, from the CLI: the incident templates, the dispatcher
//! cockpit, a technician's job packet and the engineering view of handoffs.

use serde_json::Value;

use super::table::{Table, cell, span};

/// `dispatch ticket templates`: what closeout needs per incident type.
pub(super) fn templates(v: &Value) -> String {
    let mut t = Table::new(&["INCIDENT TYPE", "REQUIRED EVIDENCE", "CHECKLIST", "DESCRIPTION"]);
    for k in v["templates"].as_array().into_iter().flatten() {
        let cells = [&k["incident_type"], &k["required_evidence_keys"], &k["checklist"], &k["description"]];
        t.row(cells.into_iter().map(cell).collect());
    }
    format!("templates {}\n{}", cell(&v["version"]), t.render("no templates"))
}

/// `dispatch ticket cockpit`: the open queue, most urgent SLA first, with what the
/// caller may do on each ticket.
pub(super) fn cockpit(v: &Value) -> String {
    let mut t = Table::new(&["TICKET", "STATE", "PRIORITY", "SLA", "SITE", "ASSIGNEE", "YOU MAY"]);
    for r in v["queue"].as_array().into_iter().flatten() {
        let left = r["sla"]["remaining_seconds"].as_i64().unwrap_or(0);
        let sla = match r["sla"]["status"].as_str() {
            Some("BREACHED") => format!("BREACHED {} ago", span(-left)),
            Some(status) => format!("{status}, {} left", span(left)),
            None => "-".into(),
        };
        let may: Vec<&str> = r["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["enabled"] == true)
            .filter_map(|a| a["tool"].as_str())
            .collect();
        let may = if may.is_empty() { "-".to_owned() } else { may.join(",") };
        t.row(vec![
            cell(&r["ticket_id"]),
            cell(&r["state"]),
            cell(&r["priority"]),
            sla,
            cell(&r["site_id"]),
            cell(&r["assignee"]),
            may,
        ]);
    }
    t.render("the queue is empty")
}

/// `dispatch ticket packet ID`: a technician's job packet, with what still blocks closeout.
pub(super) fn job_packet(v: &Value) -> String {
    let c = &v["closeout"];
    let checklist: Vec<String> = v["checklist"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| format!("[{}] {}", if i["done"] == true { "x" } else { " " }, cell(&i["item"])))
        .collect();
    let gate = if c["ready"] == true {
        "ready to complete".to_owned()
    } else {
        let mut missing = vec![];
        if c["missing_evidence_keys"].as_array().is_some_and(|m| !m.is_empty()) {
            missing.push(format!("evidence {}", cell(&c["missing_evidence_keys"])));
        }
        if c["missing_checklist_items"].as_array().is_some_and(|m| !m.is_empty()) {
            missing.push(format!("checklist {}", cell(&c["missing_checklist_items"])));
        }
        if c["signature_present"] != true && c["no_signature_reason"].is_null() {
            missing.push("a signature or --no-signature-reason".into());
        }
        format!("NOT ready: missing {}", missing.join("; "))
    };
    [
        format!("{}  {}  {}", cell(&v["ticket_id"]), cell(&v["state"]), cell(&v["priority"])),
        format!("  site:      {} / {}", cell(&v["account_id"]), cell(&v["site_id"])),
        format!("  scope:     {}", cell(&v["scope"])),
        format!("  window:    {} → {}", cell(&v["window"]["start"]), cell(&v["window"]["end"])),
        format!("  assignee:  {}", cell(&v["assignee"])),
        format!(
            "  evidence:  required {}; present {}",
            cell(&c["required_evidence_keys"]),
            cell(&c["present_evidence_keys"])
        ),
        format!("  checklist: {}", if checklist.is_empty() { "-".into() } else { checklist.join("  ") }),
        format!("  closeout:  {gate}"),
    ]
    .join("\n")
}

/// `dispatch handoff insights`: aggregates only, no content.
pub(super) fn insights(v: &Value) -> String {
    let mut t = Table::new(&["TRIGGER CLASS", "HANDOFFS", "FIRST RESPONSE p50/p95", "DECISION p50/p95"]);
    let ms = |x: &Value| x.as_i64().map_or("-".into(), |ms| span(ms / 1000));
    for (class, s) in v["by_trigger_class"].as_object().into_iter().flatten() {
        let first = format!("{} / {}", ms(&s["first_response_p50_ms"]), ms(&s["first_response_p95_ms"]));
        let decision = format!("{} / {}", ms(&s["decision_p50_ms"]), ms(&s["decision_p95_ms"]));
        t.row(vec![class.clone(), cell(&s["handoffs"]), first, decision]);
    }
    format!(
        "lanes {}, checkpoints {}, handoffs {}; HITL rate {:.2} handoffs per checkpoint\ndecisions: {}\n{}",
        cell(&v["lanes"]),
        cell(&v["checkpoints"]),
        cell(&v["handoffs"]),
        v["hitl_rate"].as_f64().unwrap_or(0.0),
        cell(&v["decision_mix"]),
        t.render("no handoffs yet")
    )
}
