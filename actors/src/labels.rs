//! Metric label values that come from callers (queues, trigger classes) are bounded:
//! the first [`MAX_VALUES`] distinct well-formed values of a label are kept as they
//! are, everything after (and anything malformed) is counted as `other`. Prometheus
//! series stay bounded however many names agents invent.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

/// Distinct values one label keeps before folding new ones into `other`.
pub const MAX_VALUES: usize = 64;
/// What an unknown or malformed value is counted as.
pub const OTHER: &str = "other";

fn seen() -> &'static Mutex<HashMap<&'static str, HashSet<String>>> {
    static SEEN: OnceLock<Mutex<HashMap<&'static str, HashSet<String>>>> = OnceLock::new();
    SEEN.get_or_init(Default::default)
}

/// The value to record for `label` = `value`.
pub fn bounded(label: &'static str, value: &str) -> String {
    let well_formed = !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
    if !well_formed {
        return OTHER.into();
    }
    let mut seen = seen().lock().unwrap_or_else(|p| p.into_inner());
    let values = seen.entry(label).or_default();
    if values.contains(value) || values.len() < MAX_VALUES {
        values.insert(value.to_owned());
        value.to_owned()
    } else {
        OTHER.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_the_bound_and_malformed_ones_fold_into_other() {
        let kept: Vec<String> = (0..MAX_VALUES).map(|i| bounded("test_label", &format!("q{i}"))).collect();
        assert!(kept.iter().enumerate().all(|(i, v)| *v == format!("q{i}")));
        assert_eq!(bounded("test_label", "one-too-many"), OTHER);
        assert_eq!(bounded("test_label", "q3"), "q3", "known values stay");
        assert_eq!(bounded("another_label", "q\n\"}"), OTHER);
        assert_eq!(bounded("another_label", &"x".repeat(65)), OTHER);
    }
}
