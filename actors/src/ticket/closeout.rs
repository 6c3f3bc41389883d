//! The closeout gate: what evidence and checklist an incident type needs before the
//! work can be completed and verified. Templates are versioned data shipped in
//! `actors/templates/` and can be overridden by a file at start-up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::{Ticket, TicketError};

/// The templates shipped with this build.
pub const BUILTIN_TEMPLATES: &str = include_str!("../../templates/incident_templates.v1.json");

/// Evidence kind that counts as the customer's signature.
pub const SIGNATURE_KIND: &str = "signature";

/// What one incident type needs at closeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentTemplate {
    pub incident_type: String,
    pub description: String,
    pub required_evidence_keys: Vec<String>,
    pub checklist: Vec<String>,
}

/// A versioned set of templates, one per incident type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Templates {
    pub version: String,
    pub templates: Vec<IncidentTemplate>,
}

/// Why a template file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TemplatesError {
    #[error("template file is not valid: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("template file is not valid: {0}")]
    Invalid(String),
}

impl Templates {
    /// The built-in set.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN_TEMPLATES).expect("built-in templates are valid (checked by a test)")
    }

    /// Parses and checks a template file: no duplicate types, keys or items, no empty names.
    pub fn parse(json: &str) -> Result<Self, TemplatesError> {
        let t: Templates = serde_json::from_str(json)?;
        if t.version.trim().is_empty() {
            return Err(TemplatesError::Invalid("version is empty".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for tpl in &t.templates {
            if tpl.incident_type.trim().is_empty() || !seen.insert(tpl.incident_type.as_str()) {
                return Err(TemplatesError::Invalid(format!(
                    "incident type {:?} is empty or repeated",
                    tpl.incident_type
                )));
            }
            for list in [&tpl.required_evidence_keys, &tpl.checklist] {
                let unique: std::collections::BTreeSet<_> = list.iter().collect();
                if unique.len() != list.len() || list.iter().any(|s| s.trim().is_empty()) {
                    return Err(TemplatesError::Invalid(format!("{}: empty or repeated entries", tpl.incident_type)));
                }
            }
        }
        Ok(t)
    }

    /// The template of an incident type, if it has one.
    pub fn get(&self, incident_type: &str) -> Option<&IncidentTemplate> {
        self.templates.iter().find(|t| t.incident_type == incident_type)
    }

    /// Every incident type, for error messages that list the valid ones.
    pub fn names(&self) -> Vec<&str> {
        self.templates.iter().map(|t| t.incident_type.as_str()).collect()
    }
}

/// Where a ticket stands against its closeout template. Lists are sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloseoutStatus {
    pub ready: bool,
    pub required_evidence_keys: Vec<String>,
    pub present_evidence_keys: Vec<String>,
    pub missing_evidence_keys: Vec<String>,
    pub missing_checklist_items: Vec<String>,
    pub signature_present: bool,
    pub no_signature_reason: Option<String>,
    pub unresolvable_uris: Vec<String>,
}

/// Evaluates the ticket's evidence and the given checklist against its template.
pub fn status(
    ticket: &Ticket,
    checklist: &BTreeMap<String, bool>,
    no_signature_reason: Option<&str>,
    templates: &Templates,
    resolves: &dyn Fn(&str) -> bool,
) -> CloseoutStatus {
    let (required, items): (Vec<String>, Vec<String>) = match templates.get(&ticket.incident_type) {
        Some(t) => (t.required_evidence_keys.clone(), t.checklist.clone()),
        // A type removed from an overriding template file: nothing extra is required.
        None => (Vec::new(), Vec::new()),
    };
    let mut unresolvable: Vec<String> =
        ticket.evidence.iter().filter(|e| !resolves(&e.uri)).map(|e| e.uri.clone()).collect();
    unresolvable.sort();
    unresolvable.dedup();
    let mut present: Vec<String> = ticket.evidence.iter().map(|e| e.evidence_key.clone()).collect();
    present.sort();
    present.dedup();
    let mut missing_evidence: Vec<String> = required.iter().filter(|k| !present.contains(k)).cloned().collect();
    missing_evidence.sort();
    let mut missing_items: Vec<String> = items.iter().filter(|i| checklist.get(*i) != Some(&true)).cloned().collect();
    missing_items.sort();
    let signature_present = ticket.evidence.iter().any(|e| e.kind == SIGNATURE_KIND);
    let no_signature_reason = no_signature_reason.filter(|r| !r.trim().is_empty()).map(str::to_owned);
    let ready = missing_evidence.is_empty()
        && missing_items.is_empty()
        && (signature_present || no_signature_reason.is_some())
        && unresolvable.is_empty();
    let mut required = required;
    required.sort();
    CloseoutStatus {
        ready,
        required_evidence_keys: required,
        present_evidence_keys: present,
        missing_evidence_keys: missing_evidence,
        missing_checklist_items: missing_items,
        signature_present,
        no_signature_reason,
        unresolvable_uris: unresolvable,
    }
}

/// The gate itself: the first unmet requirement as an error, in the order a
/// technician would fix them (what is missing, the signature, then broken references).
pub fn gate(
    ticket: &Ticket,
    checklist: &BTreeMap<String, bool>,
    no_signature_reason: Option<&str>,
    templates: &Templates,
    resolves: &dyn Fn(&str) -> bool,
) -> Result<(), TicketError> {
    let s = status(ticket, checklist, no_signature_reason, templates, resolves);
    if !s.missing_evidence_keys.is_empty() || !s.missing_checklist_items.is_empty() {
        return Err(TicketError::CloseoutIncomplete {
            missing_evidence_keys: s.missing_evidence_keys,
            missing_checklist_items: s.missing_checklist_items,
        });
    }
    if !s.signature_present && s.no_signature_reason.is_none() {
        return Err(TicketError::MissingSignature);
    }
    if !s.unresolvable_uris.is_empty() {
        return Err(TicketError::InvalidEvidenceReference { uris: s.unresolvable_uris });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_templates_parse_and_cover_six_types() {
        assert!(Templates::builtin().templates.len() >= 6);
    }

    #[test]
    fn bad_template_files_are_refused() {
        let cases = [
            ("not json", "{"),
            ("unknown field", r#"{"version":"v1","templates":[],"extra":1}"#),
            ("empty version", r#"{"version":" ","templates":[]}"#),
            (
                "repeated type",
                r#"{"version":"v1","templates":[{"incident_type":"A","description":"","required_evidence_keys":[],"checklist":[]},{"incident_type":"A","description":"","required_evidence_keys":[],"checklist":[]}]}"#,
            ),
            (
                "repeated key",
                r#"{"version":"v1","templates":[{"incident_type":"A","description":"","required_evidence_keys":["x","x"],"checklist":[]}]}"#,
            ),
        ];
        for (name, json) in cases {
            assert!(Templates::parse(json).is_err(), "{name} should be refused");
        }
    }
}
