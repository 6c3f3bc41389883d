//! Every list pages: `?limit=` (1..=[`MAX_LIMIT`], default [`DEFAULT_LIMIT`]) and
//! `?cursor=` (the `next_cursor` of the previous page, absent on the last one).

use serde::{Deserialize, Deserializer};
use utoipa::IntoParams;
use utoipa::openapi::{ObjectBuilder, Type};

/// Entries per page unless asked otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// Most entries one page holds.
pub const MAX_LIMIT: usize = 1000;

/// Paging of a listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    #[serde(default, deserialize_with = "limit")]
    #[param(schema_with = limit_schema)]
    pub limit: Option<usize>,
}

/// The schema of `?limit=`: what [`limit`] accepts.
pub fn limit_schema() -> utoipa::openapi::Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_LIMIT as f64))
        .description(Some(format!("At most this many (1..={MAX_LIMIT}, default {DEFAULT_LIMIT}).")))
        .build()
}

/// Reads `?limit=`, refusing a page size outside 1..=[`MAX_LIMIT`].
pub fn limit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    query_number(d, "limit", 1..=MAX_LIMIT as u64).map(|n| Some(n as usize))
}

/// Reads a whole-number query parameter, refusing one outside `range` with a message
/// that names the parameter and the range (what its schema says).
pub fn query_number<'de, D: Deserializer<'de>>(
    d: D,
    name: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, D::Error> {
    String::deserialize(d)?.parse::<u64>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
        serde::de::Error::custom(format!("{name} must be a whole number from {} to {}", range.start(), range.end()))
    })
}

impl Page {
    /// The page size asked for.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT)
    }

    /// The next page's cursor for a page read from an index after `cursor` with
    /// [`Page::limit`]: the last key, when the page came back full.
    pub fn next_after<T>(&self, items: &[T], key: impl Fn(&T) -> String) -> Option<String> {
        (items.len() >= self.limit()).then(|| items.last().map(key)).flatten()
    }

    /// The entries of `items` in `key` order after the cursor, at most `limit`, with
    /// the cursor of the next page when more may follow.
    pub fn slice<T>(&self, items: Vec<T>, key: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
        let limit = self.limit();
        let after = self.cursor.as_deref();
        let mut keyed: Vec<(String, T)> =
            items.into_iter().map(|i| (key(&i), i)).filter(|(k, _)| after.is_none_or(|c| k.as_str() > c)).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let mut page: Vec<T> = keyed.into_iter().take(limit + 1).map(|(_, i)| i).collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let next = if more { page.last().map(&key) } else { None };
        (page, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_the_whole_list_once() {
        let items: Vec<String> = (0..25).map(|i| format!("{i:03}")).collect();
        let mut page = Page { cursor: None, limit: Some(10) };
        let mut seen = Vec::new();
        loop {
            let (got, next) = page.slice(items.clone(), Clone::clone);
            seen.extend(got);
            match next {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, items);
    }

    #[test]
    fn limits_outside_the_documented_range_are_refused() {
        let read = |q: &str| serde_urlencoded::from_str::<Page>(q).map(|p| p.limit());
        assert_eq!(read("").unwrap(), DEFAULT_LIMIT);
        assert_eq!(read("limit=1").unwrap(), 1);
        assert_eq!(read("limit=1000").unwrap(), MAX_LIMIT);
        for bad in ["limit=0", "limit=1001", "limit=-1", "limit=abc", "limit=99999999999999999999", "limit="] {
            assert!(read(bad).is_err(), "{bad} was accepted");
        }
    }
}
