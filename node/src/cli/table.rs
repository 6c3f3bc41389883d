//! Human output: tables with a header row and columns as wide as their content, a
//! sentence instead of a blank line for an empty list, and times as people read them.

use serde_json::Value;

/// Whether tables show their wide columns (`-o wide`); set once per command.
static WIDE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(super) fn set_wide(wide: bool) {
    WIDE.store(wide, std::sync::atomic::Ordering::Relaxed);
}

/// Rows under a header, printed with aligned columns.
pub(super) struct Table {
    headers: Vec<&'static str>,
    /// How many of the headers (from the left) show without `-o wide`.
    narrow: usize,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), narrow: headers.len(), rows: vec![] }
    }

    /// Adds columns shown only with `-o wide`; rows give their cells after the others.
    pub(super) fn wide(mut self, headers: &[&'static str]) -> Table {
        self.headers.extend_from_slice(headers);
        self
    }

    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table, or `empty` when it has no rows. The last column is not padded.
    pub(super) fn render(&self, empty: &str) -> String {
        if self.rows.is_empty() {
            return empty.to_owned();
        }
        let shown = if WIDE.load(std::sync::atomic::Ordering::Relaxed) { self.headers.len() } else { self.narrow };
        let headers = &self.headers[..shown];
        let width = |i: usize| {
            let cells = self.rows.iter().map(|r| r.get(i).map_or(0, |c| c.chars().count()));
            cells.chain([headers[i].len()]).max().unwrap_or(0)
        };
        let widths: Vec<usize> = (0..shown).map(width).collect();
        let line = |cells: Vec<&str>| {
            let last = cells.len().saturating_sub(1);
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| if i == last { (*c).to_owned() } else { format!("{c:<w$}", w = widths[i]) })
                .collect();
            padded.join("  ").trim_end().to_owned()
        };
        let mut out = vec![line(headers.to_vec())];
        out.extend(self.rows.iter().map(|r| line(r.iter().take(shown).map(String::as_str).collect())));
        out.join("\n")
    }
}

/// A JSON value as a cell: strings as they are, null as `-`, the rest as JSON.
pub(super) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(map) if map.is_empty() => "-".into(),
        Value::Object(map) => map.iter().map(|(k, v)| format!("{k}={}", cell(v))).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A Unix time in seconds as `2026-12-05 08:18Z (in 14m)` / `(3h02m ago)`.
pub(super) fn at_secs(secs: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else { return secs.to_string() };
    let when = format!("{}-{:02}-{:02} {:02}:{:02}Z", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute());
    if secs >= now { format!("{when} (in {})", span(secs - now)) } else { format!("{when} ({} ago)", span(now - secs)) }
}

/// A Unix time in milliseconds, as [`at_secs`].
pub(super) fn at_ms(ms: i64) -> String {
    at_secs(ms.div_euclid(1000))
}

/// `90` → `1m30s`: how long, for people.
pub(super) fn span(s: i64) -> String {
    let s = s.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_under_their_headers_and_an_empty_list_says_so() {
        let mut t = Table::new(&["SEQ", "KIND", "ACTOR"]);
        t.row(vec!["9".into(), "ticket.created".into(), "disp-1".into()]);
        t.row(vec!["10".into(), "ticket.triaged".into(), "disp-1".into()]);
        let out = t.render("none");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "SEQ  KIND            ACTOR");
        assert_eq!(lines[1], "9    ticket.created  disp-1");
        assert_eq!(lines[2], "10   ticket.triaged  disp-1", "no shift from #10 on");
        assert_eq!(Table::new(&["A"]).render("no tickets"), "no tickets");
    }

    #[test]
    fn times_and_spans_read_as_people_say_them() {
        assert_eq!(span(59), "59s");
        assert_eq!(span(90), "1m30s");
        assert_eq!(span(7_320), "2h02m");
        assert_eq!(span(90_000), "1d01h");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(at_secs(now + 3_600).ends_with("(in 1h00m)") || at_secs(now + 3_600).ends_with("(in 59m59s)"));
        assert!(at_secs(now - 120).ends_with("(2m00s ago)") || at_secs(now - 120).ends_with("(2m01s ago)"));
        assert_eq!(cell(&Value::Null), "-");
    }
}
