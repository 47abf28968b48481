//! Two background job schedulers (two instances) sharing one SQL store:
//! one run per interval, takeover after the lease lapses. PostgreSQL needs
//! `SMTPY_TEST_POSTGRES_URL` (skipped without it, failing under `CI`).

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_schedulers_share_leases() {
    let store = common::sqlite_store().await.expect("sqlite store");
    smtpy_core::testing::jobs_two_schedulers_share_leases(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_schedulers_share_leases() {
    let Some(store) = common::postgres_store().await else {
        return;
    };
    smtpy_core::testing::jobs_two_schedulers_share_leases(store).await;
}
