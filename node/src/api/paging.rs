//! Every list pages: `?limit=` (1..=[`MAX_LIMIT`], default [`DEFAULT_LIMIT`]) and
//! `?cursor=` (the `next_cursor` of the previous page, absent on the last one).

use serde::Deserialize;
use utoipa::IntoParams;

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
    /// At most this many (1..=1000, default 100).
    pub limit: Option<usize>,
}

impl Page {
    /// The page size asked for, within bounds.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
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
        assert_eq!(Page { cursor: None, limit: Some(0) }.limit(), 1);
        assert_eq!(Page { cursor: None, limit: Some(1_000_000) }.limit(), MAX_LIMIT);
    }
}
