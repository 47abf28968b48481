//! Background work the embedding service schedules. (Not built yet.)

use std::time::Duration;

use crate::problem::ApiResult;
use crate::state::ApiState;

/// Re-checks the DNS of every domain last checked more than `older_than`
/// ago and stores the results; returns how many domains were checked.
///
/// # Errors
///
/// A store failure.
pub async fn recheck_domains(state: &ApiState, older_than: Duration) -> ApiResult<usize> {
    let _ = (state, older_than);
    Ok(0)
}
