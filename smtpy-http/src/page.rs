//! The one pagination style: `?limit=&cursor=` in, `{items, next_cursor}` out.
//!
//! A cursor is opaque to clients (the id of the last row, as returned in
//! `next_cursor`); `next_cursor` is absent on the last page.

use serde::{Deserialize, Serialize};
use smtpy_core::store::{Cursor, Page, PageRequest};
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
