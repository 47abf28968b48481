//! The one pagination style: `?limit=&cursor=` in, `{items, next_cursor}` out.
//!
//! A cursor is opaque to clients (the id of the last row, as returned in
//! `next_cursor`); `next_cursor` is absent on the last page.

use serde::{Deserialize, Serialize};
use std::future::Future;

use smtpy_core::store::{Cursor, MAX_PAGE_SIZE, Page, PageRequest};
use utoipa::{IntoParams, ToSchema};

use crate::problem::{ApiResult, Problem};

/// Largest `limit` accepted (larger values are clamped).
pub const MAX_LIMIT: u32 = 200;
/// `limit` when none is given.
pub const DEFAULT_LIMIT: u32 = 50;

/// Pagination query parameters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Rows per page, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(max_length = 64)]
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The store request.
    ///
    /// # Errors
    ///
    /// `400` when the cursor is not one this API returned.
    pub fn request(&self) -> ApiResult<PageRequest> {
        let after = match self.cursor.as_deref().filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(Cursor::after(parse_cursor(c)?)),
        };
        Ok(PageRequest {
            after,
            limit: self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
        })
    }
}

/// Parses a cursor string.
///
/// # Errors
///
/// `400 bad-request` when malformed.
pub fn parse_cursor(c: &str) -> ApiResult<uuid::Uuid> {
    uuid::Uuid::try_parse(c)
        .map_err(|_| Problem::bad_request("cursor: not a cursor this API returned"))
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PageOf<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> PageOf<T> {
    /// Converts a store page, mapping each row.
    pub fn map<U>(page: Page<U>, f: impl FnMut(U) -> T) -> PageOf<T> {
        PageOf {
            items: page.items.into_iter().map(f).collect(),
            next_cursor: page.next.map(|c| c.last_id().to_string()),
        }
    }
}

/// Rows a filtered list reads from the store at most for one API page; past
/// that it returns what it found, with a cursor to continue.
pub const MAX_SCAN_ROWS: usize = 5000;

/// One API page of the rows passing `keep`, for lists the store cannot
/// filter itself: reads store pages fetched by `fetch` (in the store's
/// order, [`MAX_PAGE_SIZE`] rows each) until `request`'s limit is filled
/// and one more match shows there is a next page, the store has no more
/// rows, or [`MAX_SCAN_ROWS`] rows were read. In the last case the page may
/// be short, even empty, and its cursor continues after the last row read.
/// Either way no row is skipped or returned twice.
///
/// # Errors
///
/// Whatever `fetch` returns.
pub(crate) async fn scan<T, F, Fut>(
    request: PageRequest,
    mut fetch: F,
    keep: impl Fn(&T) -> bool,
    id_of: impl Fn(&T) -> uuid::Uuid,
) -> ApiResult<Page<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = ApiResult<Page<T>>>,
{
    let limit = request.effective_limit();
    let mut items: Vec<T> = Vec::with_capacity(limit);
    let mut after = request.after;
    let mut scanned = 0usize;
    let last_kept = |items: &Vec<T>| items.last().map(|r| Cursor::after(id_of(r)));
    loop {
        let page = fetch(PageRequest {
            after,
            limit: MAX_PAGE_SIZE,
        })
        .await?;
        for row in page.items {
            scanned += 1;
            after = Some(Cursor::after(id_of(&row)));
            if keep(&row) {
                if items.len() == limit {
                    // One match more than the page holds: there is a next page.
                    let next = last_kept(&items);
                    return Ok(Page { items, next });
                }
                items.push(row);
            }
        }
        if page.next.is_none() {
            return Ok(Page { items, next: None });
        }
        if scanned >= MAX_SCAN_ROWS {
            let next = if items.len() == limit {
                last_kept(&items)
            } else {
                after
            };
            return Ok(Page { items, next });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store of `n` rows (ids 1..=n) answering pages after a cursor.
    fn fetcher(
        n: u128,
    ) -> impl FnMut(PageRequest) -> std::future::Ready<ApiResult<Page<uuid::Uuid>>> {
        move |req: PageRequest| {
            let start = req.after.map_or(1, |c| c.last_id().as_u128() + 1);
            let end = (start + u128::from(req.limit)).min(n + 1);
            let items: Vec<uuid::Uuid> = (start..end).map(uuid::Uuid::from_u128).collect();
            let next = (end <= n).then(|| Cursor::after(uuid::Uuid::from_u128(end - 1)));
            std::future::ready(Ok(Page { items, next }))
        }
    }

    /// Every kept row, page by page, following the cursors.
    fn walk(n: u128, limit: u32, keep: fn(u128) -> bool) -> (Vec<u128>, usize) {
        let mut all = Vec::new();
        let mut pages = 0;
        let mut after = None;
        loop {
            let req = PageRequest { after, limit };
            let page =
                block_on(scan(req, fetcher(n), |r| keep(r.as_u128()), |r| *r)).expect("page");
            pages += 1;
            assert!(page.items.len() <= limit as usize);
            all.extend(page.items.iter().map(|r| r.as_u128()));
            match page.next {
                Some(c) => after = Some(c),
                None => return (all, pages),
            }
            assert!(pages < 1000, "no progress");
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn pages_are_complete_without_duplicates_or_a_spurious_last_page() {
        // Every third row kept, 90 rows: 30 matches in pages of 10.
        let (all, pages) = walk(90, 10, |r| r % 3 == 0);
        assert_eq!(all, (1..=90).filter(|r| r % 3 == 0).collect::<Vec<_>>());
        assert_eq!(pages, 3, "an exactly full last page has no cursor");
    }

    #[test]
    fn sparse_matches_stop_at_the_budget_and_continue_after_the_last_row_read() {
        // One match at the very end of 12,000 rows: the first pages come
        // back empty with a cursor, and the walk still finds it once.
        let (all, pages) = walk(12_000, 10, |r| r == 12_000);
        assert_eq!(all, vec![12_000]);
        assert_eq!(pages, 3, "5000 + 5000 + 2000 rows read");
    }
}
