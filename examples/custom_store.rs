//! Plugging your own database into smtpy: implement [`Store`] (one trait per
//! concern) and prove it with the backend conformance suite, the same tests
//! the memory, redb, SQLite and PostgreSQL backends pass.
//!
//! To stay short, `MyStore` forwards every call to [`MemoryStore`]; a real
//! backend writes each method against its database, honouring the contract in
//! the method's doc comment (atomic? idempotent? which error on a conflict?).
//! The mail queue is a separate trait, `smtpy_core::store::QueueStore`, with
//! its own suite (`smtpy_core::queue_conformance_suite!`).
//!
//! Run it with `cargo run --example custom_store`: it runs the whole suite
//! against `MyStore` and prints how many tests passed. In your own crate,
//! prefer `smtpy_core::conformance_suite!(|| async { … })` in a test file
//! (feature `testing` of `smtpy-core`): one `#[tokio::test]` per contract.

use async_trait::async_trait;
use smtpy_core::StoreResult;
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::gcra::{Decision, Quota};
use smtpy_core::ids::{
    AliasId, ApiKeyId, ContactId, DomainId, InvitationId, MailboxId, RuleId, UserId,
};
use smtpy_core::memory::MemoryStore;
use smtpy_core::model::{
    Alias, ApiKey, AuditEvent, Contact, CounterDelta, DailyUsage, DeliveryEvent, Domain,
    EventFilter, ForwardingRule, Invitation, Mailbox, SecretHash, Session, UsageRecord,
    UsageSubject, User,
};
use smtpy_core::store::*;
use smtpy_core::time::{Day, Timestamp};

/// Your backend. Here: a connection pool would live where `inner` is.
#[derive(Debug, Default)]
pub struct MyStore {
    inner: MemoryStore,
}

/// Implements one storage trait by forwarding each listed method to
/// `MemoryStore`. In a real backend each body is a query.
macro_rules! delegate {
    ($trait:ident { $(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)* }) => {
        #[async_trait]
        impl $trait for MyStore {
            $(async fn $name(&self $(, $arg: $ty)*) -> $ret {
                // A real store talks to its database here.
                <MemoryStore as $trait>::$name(&self.inner $(, $arg)*).await
            })*
        }
    };
}

delegate!(UserStore {
    fn create_user(&self, user: &User) -> StoreResult<()>;
    fn get_user(&self, id: UserId) -> StoreResult<User>;
    fn find_user_by_email(&self, email: &EmailAddress) -> StoreResult<Option<User>>;
    fn update_user(&self, user: &User) -> StoreResult<User>;
    fn list_users(&self, page: PageRequest) -> StoreResult<Page<User>>;
    fn count_users(&self) -> StoreResult<u64>;
    fn delete_user(&self, id: UserId) -> StoreResult<()>;
});
delegate!(CredentialStore {
    fn create_api_key(&self, key: &ApiKey) -> StoreResult<()>;
    fn find_api_key(&self, hash: &SecretHash) -> StoreResult<Option<ApiKey>>;
    fn list_api_keys(&self, owner: UserId) -> StoreResult<Vec<ApiKey>>;
    fn touch_api_key(&self, id: ApiKeyId, at: Timestamp) -> StoreResult<()>;
    fn delete_api_key(&self, access: Access, id: ApiKeyId) -> StoreResult<()>;
    fn create_session(&self, session: &Session) -> StoreResult<()>;
    fn find_session(&self, hash: &SecretHash) -> StoreResult<Option<Session>>;
    fn touch_session(&self, hash: &SecretHash, at: Timestamp) -> StoreResult<()>;
    fn delete_session(&self, hash: &SecretHash) -> StoreResult<()>;
    fn list_sessions(&self, user: UserId) -> StoreResult<Vec<Session>>;
    fn delete_user_sessions(&self, user: UserId) -> StoreResult<u64>;
    fn purge_expired_sessions(&self, now: Timestamp) -> StoreResult<u64>;
    fn create_invitation(&self, invitation: &Invitation) -> StoreResult<()>;
    fn find_invitation(&self, hash: &SecretHash) -> StoreResult<Option<Invitation>>;
    fn redeem_invitation(&self, hash: &SecretHash, user: UserId, now: Timestamp) -> StoreResult<Invitation>;
    fn list_invitations(&self, page: PageRequest) -> StoreResult<Page<Invitation>>;
    fn delete_invitation(&self, id: InvitationId) -> StoreResult<()>;
});
delegate!(DomainStore {
    fn create_domain(&self, domain: &Domain) -> StoreResult<()>;
    fn get_domain(&self, access: Access, id: DomainId) -> StoreResult<Domain>;
    fn find_domain_by_name(&self, name: &DomainName) -> StoreResult<Option<Domain>>;
    fn list_domains(&self, access: Access, page: PageRequest) -> StoreResult<Page<Domain>>;
    fn update_domain(&self, access: Access, domain: &Domain) -> StoreResult<Domain>;
    fn delete_domain(&self, access: Access, id: DomainId) -> StoreResult<()>;
});
delegate!(MailboxStore {
    fn create_mailbox(&self, mailbox: &Mailbox) -> StoreResult<()>;
    fn get_mailbox(&self, access: Access, id: MailboxId) -> StoreResult<Mailbox>;
    fn list_mailboxes(&self, owner: UserId) -> StoreResult<Vec<Mailbox>>;
    fn find_mailbox_by_token(&self, hash: &SecretHash) -> StoreResult<Option<Mailbox>>;
    fn update_mailbox(&self, access: Access, mailbox: &Mailbox) -> StoreResult<Mailbox>;
    fn delete_mailbox(&self, access: Access, id: MailboxId) -> StoreResult<()>;
});
delegate!(AliasStore {
    fn create_alias(&self, alias: &Alias) -> StoreResult<()>;
    fn create_aliases(&self, aliases: &[Alias]) -> StoreResult<()>;
    fn get_alias(&self, access: Access, id: AliasId) -> StoreResult<Alias>;
    fn find_alias_by_address(&self, address: &EmailAddress) -> StoreResult<Option<Alias>>;
    fn list_aliases(&self, access: Access, filter: &AliasFilter, page: PageRequest) -> StoreResult<Page<Alias>>;
    fn update_alias(&self, access: Access, alias: &Alias) -> StoreResult<Alias>;
    fn delete_alias(&self, access: Access, id: AliasId, at: Timestamp) -> StoreResult<()>;
    fn restore_alias(&self, access: Access, id: AliasId) -> StoreResult<()>;
    fn bulk_update_aliases(&self, access: Access, ids: &[AliasId], action: &BulkAliasAction, at: Timestamp) -> StoreResult<u64>;
    fn record_alias_activity(&self, id: AliasId, delta: CounterDelta, at: Timestamp) -> StoreResult<()>;
    fn purge_deleted_aliases(&self, older_than: Timestamp) -> StoreResult<u64>;
    fn is_tombstoned(&self, address: &EmailAddress) -> StoreResult<bool>;
});
delegate!(ContactStore {
    fn create_contact(&self, contact: &Contact) -> StoreResult<()>;
    fn get_contact(&self, access: Access, id: ContactId) -> StoreResult<Contact>;
    fn find_contact(&self, alias: AliasId, address: &EmailAddress) -> StoreResult<Option<Contact>>;
    fn find_contact_by_reverse_key(&self, key: &str) -> StoreResult<Option<Contact>>;
    fn list_contacts(&self, access: Access, alias: Option<AliasId>, page: PageRequest) -> StoreResult<Page<Contact>>;
    fn update_contact(&self, access: Access, contact: &Contact) -> StoreResult<Contact>;
    fn delete_contact(&self, access: Access, id: ContactId) -> StoreResult<()>;
});
delegate!(RuleStore {
    fn create_rule(&self, rule: &ForwardingRule) -> StoreResult<()>;
    fn get_rule(&self, access: Access, id: RuleId) -> StoreResult<ForwardingRule>;
    fn list_rules(&self, owner: UserId) -> StoreResult<Vec<ForwardingRule>>;
    fn rules_for_alias(&self, alias: &Alias) -> StoreResult<Vec<ForwardingRule>>;
    fn update_rule(&self, access: Access, rule: &ForwardingRule) -> StoreResult<ForwardingRule>;
    fn delete_rule(&self, access: Access, id: RuleId) -> StoreResult<()>;
    fn reorder_rules(&self, owner: UserId, ids: &[RuleId]) -> StoreResult<()>;
});
delegate!(AuditStore {
    fn append_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    fn list_audit(&self, access: Access, filter: &AuditFilter, page: PageRequest) -> StoreResult<Page<AuditEvent>>;
});
delegate!(EventStore {
    fn append_events(&self, events: &[DeliveryEvent]) -> StoreResult<()>;
    fn list_events(&self, access: Access, filter: &EventFilter, page: PageRequest) -> StoreResult<Page<DeliveryEvent>>;
    fn count_events(&self, filter: &EventFilter) -> StoreResult<u64>;
    fn purge_events(&self, older_than: Timestamp) -> StoreResult<u64>;
});
delegate!(UsageStore {
    fn record_usage(&self, record: &UsageRecord) -> StoreResult<()>;
    fn usage(&self, access: Access, subject: UsageSubject, from: Day, to: Day) -> StoreResult<Vec<DailyUsage>>;
});
delegate!(RateLimitStore {
    fn check_rate(&self, key: &str, quota: &Quota, now: Timestamp, cost: u32) -> StoreResult<Decision>;
    fn purge_rate_limits(&self, older_than: Timestamp) -> StoreResult<u64>;
});
delegate!(ControlStore {
    fn get_setting(&self, key: &str) -> StoreResult<Option<Setting>>;
    fn put_setting(&self, key: &str, value: &str, now: Timestamp) -> StoreResult<Setting>;
    fn list_settings(&self) -> StoreResult<Vec<Setting>>;
    fn acquire_job_lease(&self, job: &str, holder: &str, now: Timestamp, until: Timestamp) -> StoreResult<bool>;
    fn release_job_lease(&self, job: &str, holder: &str) -> StoreResult<bool>;
    fn record_job_run(&self, job: &str, run: &JobRun) -> StoreResult<()>;
    fn list_jobs(&self) -> StoreResult<Vec<JobState>>;
    fn expired_aliases(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<Alias>>;
    fn purge_expired_invitations(&self, now: Timestamp) -> StoreResult<u64>;
    fn rollup_usage(&self, before: Day) -> StoreResult<u64>;
});

#[async_trait]
impl Store for MyStore {
    fn backend_name(&self) -> &'static str {
        "mystore"
    }
    async fn ping(&self) -> StoreResult<()> {
        // A real store runs a trivial query (`SELECT 1`) here.
        self.inner.ping().await
    }
}

/// Runs each named conformance test on a fresh `MyStore`, in its own task so
/// one failure (a panic naming the broken contract) does not stop the rest.
macro_rules! run_suite {
    ($($name:ident,)*) => {{
        let (mut passed, mut failed) = (0usize, Vec::new());
        $(
            let task = tokio::spawn(async {
                smtpy_core::testing::$name(&MyStore::default()).await
            });
            match task.await {
                Ok(()) => passed += 1,
                Err(_) => failed.push(stringify!($name)),
            }
        )*
        (passed, failed)
    }};
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // The list of `smtpy_core::conformance_suite!` (smtpy-core/src/testing/mod.rs);
    // tests/examples.rs checks that it stays complete.
    let (passed, failed) = run_suite!(
        store_ping_and_backend_name,
        user_create_get_round_trip,
        user_duplicate_email_is_already_exists,
        user_get_missing_is_not_found,
        user_find_by_email_case_and_idna,
        user_update_round_trip_and_revision,
        user_settings_round_trip,
        user_settings_update_and_revision,
        user_update_stale_revision_is_conflict,
        user_update_email_duplicate_is_already_exists,
        user_update_missing_is_not_found,
        user_concurrent_updates_one_wins,
        user_count,
        user_list_pagination,
        user_delete_cascades,
        user_delete_missing_is_not_found,
        api_key_create_find_round_trip,
        api_key_duplicate_hash_is_already_exists,
        api_key_owner_must_exist,
        api_key_list_by_owner,
        api_key_touch_never_moves_backwards,
        api_key_delete_is_owner_scoped,
        session_create_find_round_trip,
        session_touch_never_moves_backwards,
        session_delete_is_idempotent,
        session_list_and_delete_user_sessions,
        session_purge_expired_boundary,
        invitation_create_find_round_trip,
        invitation_redeem_once,
        invitation_redeem_expired_is_gone,
        invitation_concurrent_redeem_one_wins,
        invitation_list_and_delete,
        domain_create_get_round_trip,
        domain_duplicate_name_is_already_exists,
        domain_owner_must_exist,
        domain_get_missing_and_cross_owner,
        domain_find_by_name_case_and_idna,
        domain_list_visibility,
        domain_update_round_trip_and_revision,
        domain_disabled_round_trip,
        domain_update_stale_revision_is_conflict,
        domain_concurrent_updates_one_wins,
        domain_shared_is_read_only_for_others,
        domain_delete_conflicts_while_aliases_exist,
        domain_default_mailboxes_must_be_owners,
        mailbox_create_get_round_trip,
        mailbox_duplicate_per_owner,
        mailbox_owner_must_exist,
        mailbox_get_missing_and_cross_owner,
        mailbox_list_by_owner,
        mailbox_find_by_token,
        mailbox_update_round_trip_and_revision,
        mailbox_update_conflicts_and_scoping,
        mailbox_concurrent_updates_one_wins,
        mailbox_delete_conflicts_while_referenced,
        alias_create_get_round_trip,
        alias_duplicate_address_is_already_exists,
        alias_create_referential_checks,
        alias_create_many,
        alias_get_missing_and_cross_owner,
        alias_find_by_address_case_and_idna,
        alias_update_round_trip_ignores_non_editable,
        alias_update_conflicts_and_scoping,
        alias_concurrent_updates_one_wins,
        alias_record_activity,
        alias_record_activity_concurrent,
        alias_list_filters,
        alias_list_deleted_filter,
        alias_list_cross_owner,
        alias_list_pagination,
        alias_list_pagination_stable_under_inserts,
        alias_list_limit_clamping,
        alias_soft_delete_and_restore,
        alias_bulk_update_each_action,
        alias_bulk_update_all_or_nothing,
        alias_purge_leaves_tombstones,
        alias_purge_respects_older_than,
        contact_create_get_round_trip,
        contact_duplicates_are_already_exists,
        contact_alias_must_exist_and_be_owners,
        contact_get_missing_and_cross_owner,
        contact_find_case_insensitive,
        contact_find_by_reverse_key,
        contact_list_scoping_and_pagination,
        contact_update_round_trip_ignores_non_editable,
        contact_concurrent_updates_one_wins,
        contact_delete,
        rule_create_get_round_trip,
        rule_create_scope_must_be_visible,
        rule_get_missing_and_cross_owner,
        rule_list_by_priority_then_id,
        rules_for_alias_selects_applicable,
        rule_update_round_trip_and_revision,
        rule_concurrent_updates_one_wins,
        rule_delete_is_owner_scoped,
        rule_reorder,
        rule_reorder_invalid_changes_nothing,
        audit_append_list_round_trip,
        audit_owner_scoping,
        audit_filter_action_and_since,
        audit_pagination,
        event_append_list_round_trip,
        event_list_newest_first_pagination_under_inserts,
        event_filter_each_field,
        event_filter_combined,
        event_owner_scoping,
        event_count,
        event_purge,
        event_append_is_atomic,
        usage_records_sum_per_day,
        usage_owner_scoping,
        rate_limit_matches_gcra_decide,
        rate_limit_burst_then_denied_then_allowed,
        rate_limit_keys_are_independent,
        rate_limit_concurrent_spends_burst_exactly,
        rate_limit_purge,
        control_settings_round_trip_and_versioning,
        control_lease_exclusive_extend_release,
        control_lease_lapse_and_takeover,
        control_lease_concurrent_one_wins,
        control_job_runs_recorded,
        control_expired_aliases,
        control_purge_expired_invitations,
        control_usage_rollup_preserves_totals,
    );
    println!(
        "conformance suite on {}: {passed} passed, {} failed",
        MyStore::default().backend_name(),
        failed.len()
    );
    if failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("failed: {}", failed.join(", "));
        std::process::ExitCode::FAILURE
    }
}
