//! How rows and keys are laid out in bytes.
//!
//! * **Rows** are `[format version: 1 byte][postcard encoding of the model
//!   struct]`. The version byte lets a later release change a row's layout
//!   and still read old rows (or rewrite them in a schema upgrade step).
//! * **Keys** are fixed-size byte arrays: ids are their 16 UUIDv7 bytes
//!   (which sort by creation time), composite keys concatenate their parts
//!   (owner id ‖ row id, …), and timestamps are 8 bytes big-endian with the
//!   sign bit flipped so that byte order is time order.

use serde::Serialize;
use serde::de::DeserializeOwned;
use smtpy_core::model::{
    Alias, ApiKey, AuditEvent, Contact, DeliveryEvent, Domain, EventKind, ForwardingRule,
    Invitation, Mailbox, Session, UsageSubject, User,
};
use smtpy_core::time::{Day, Timestamp};

use crate::error::Error;

/// Format version of every row written by this build.
pub(crate) const RECORD_V1: u8 = 1;

/// A model type stored as an encoded row.
pub(crate) trait Record: Serialize + DeserializeOwned {
    /// Kind of row, for errors (matches the in-memory store's names).
    const ENTITY: &'static str;
}

macro_rules! records {
    ($($t:ty => $name:literal),* $(,)?) => {$(
        impl Record for $t {
            const ENTITY: &'static str = $name;
        }
    )*};
}
records!(
    User => "user",
    ApiKey => "api key",
    Session => "session",
    Invitation => "invitation",
    Domain => "domain",
    Mailbox => "mailbox",
    Alias => "alias",
    Contact => "contact",
    ForwardingRule => "rule",
    AuditEvent => "audit event",
    DeliveryEvent => "delivery event",
    smtpy_core::store::Setting => "setting",
    smtpy_core::store::JobState => "job",
);

/// Encodes a row: version byte, then postcard.
pub(crate) fn encode<T: Record>(row: &T) -> Result<Vec<u8>, Error> {
    postcard::to_extend(row, vec![RECORD_V1]).map_err(|source| Error::Encode {
        entity: T::ENTITY,
        source,
    })
}

/// Decodes a row written by [`encode`]; anything else is
/// [`Error::Corrupt`], never a panic.
pub(crate) fn decode<T: Record>(bytes: &[u8]) -> Result<T, Error> {
    match bytes.split_first() {
        Some((&RECORD_V1, body)) => match postcard::take_from_bytes::<T>(body) {
            Ok((row, [])) => Ok(row),
            Ok((_, rest)) => Err(Error::corrupt(
                T::ENTITY,
                format!("{} trailing bytes", rest.len()),
            )),
            Err(e) => Err(Error::corrupt(T::ENTITY, e.to_string())),
        },
        Some((v, _)) => Err(Error::corrupt(
            T::ENTITY,
            format!("unknown record format version {v}"),
        )),
        None => Err(Error::corrupt(T::ENTITY, "empty record")),
    }
}

/// A 16-byte id key.
pub(crate) type Id = [u8; 16];
/// Two ids: `parent ‖ child`, e.g. owner ‖ alias.
pub(crate) type Pair = [u8; 32];

/// `a ‖ b`.
pub(crate) fn pair(a: Id, b: Id) -> Pair {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(&a);
    k[16..].copy_from_slice(&b);
    k
}

/// The child half of a [`pair`].
pub(crate) fn second(k: &Pair) -> Id {
    let mut id = [0u8; 16];
    id.copy_from_slice(&k[16..]);
    id
}

/// Inclusive bounds of every pair whose parent is `parent` and whose child
/// comes after `after` (exclusive) — the range an owner-scoped list reads.
pub(crate) fn pair_bounds(parent: Id, after: Option<Id>) -> (std::ops::Bound<Pair>, Pair) {
    use std::ops::Bound;
    let start = match after {
        Some(a) => Bound::Excluded(pair(parent, a)),
        None => Bound::Included(pair(parent, [0; 16])),
    };
    (start, pair(parent, [0xff; 16]))
}

/// Any id (owner, alias…) followed by a variable-length text key.
pub(crate) fn id_text(id: Id, text: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + text.len());
    k.extend_from_slice(&id);
    k.extend_from_slice(text.as_bytes());
    k
}

/// A timestamp as 8 bytes that sort in time order.
pub(crate) fn ts_bytes(t: Timestamp) -> [u8; 8] {
    ((t.as_unix_millis() as u64) ^ (1 << 63)).to_be_bytes()
}

/// The timestamp [`ts_bytes`] encoded.
pub(crate) fn ts_from_bytes(b: [u8; 8]) -> Timestamp {
    Timestamp::from_unix_millis((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

/// A time-then-id key (`at ‖ id`): sorts by time, ties by id.
pub(crate) type TimeId = [u8; 24];

/// `at ‖ id`, a [`TimeId`].
pub(crate) fn time_id(at: Timestamp, id: Id) -> TimeId {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&ts_bytes(at));
    k[8..].copy_from_slice(&id);
    k
}

/// The id half of a [`TimeId`].
pub(crate) fn time_id_id(k: &TimeId) -> Id {
    let mut id = [0u8; 16];
    id.copy_from_slice(&k[8..]);
    id
}

/// The time half of a [`TimeId`].
pub(crate) fn time_id_at(k: &TimeId) -> Timestamp {
    let mut t = [0u8; 8];
    t.copy_from_slice(&k[..8]);
    ts_from_bytes(t)
}

/// Soft-deleted alias index key: `deleted_at ‖ alias id`.
pub(crate) fn deleted_key(at: Timestamp, id: Id) -> TimeId {
    time_id(at, id)
}

/// The alias id of a [`deleted_key`].
pub(crate) fn deleted_key_id(k: &TimeId) -> Id {
    time_id_id(k)
}

/// Session-by-user index key: `user ‖ session id hash`.
pub(crate) fn session_key(user: Id, hash: &[u8; 32]) -> [u8; 48] {
    let mut k = [0u8; 48];
    k[..16].copy_from_slice(&user);
    k[16..].copy_from_slice(hash);
    k
}

/// The session hash of a [`session_key`].
pub(crate) fn session_key_hash(k: &[u8; 48]) -> [u8; 32] {
    let mut h = [0u8; 32];
    h.copy_from_slice(&k[16..]);
    h
}

/// Usage counter key: `subject kind (0 user, 1 alias) ‖ id ‖ day`.
pub(crate) fn usage_key(subject: UsageSubject, day: Day) -> [u8; 21] {
    let (kind, id) = match subject {
        UsageSubject::User(u) => (0u8, u.to_bytes()),
        UsageSubject::Alias(a) => (1u8, a.to_bytes()),
    };
    let mut k = [0u8; 21];
    k[0] = kind;
    k[1..17].copy_from_slice(&id);
    k[17..].copy_from_slice(&((day.days_since_epoch() as u32) ^ (1 << 31)).to_be_bytes());
    k
}

/// The day of a [`usage_key`].
pub(crate) fn usage_key_day(k: &[u8; 21]) -> Day {
    let mut d = [0u8; 4];
    d.copy_from_slice(&k[17..]);
    Day::from_days_since_epoch((u32::from_be_bytes(d) ^ (1 << 31)) as i32)
}

/// Usage counter value: messages ‖ bytes, little-endian.
pub(crate) fn usage_value(messages: u64, bytes: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&messages.to_le_bytes());
    v[8..].copy_from_slice(&bytes.to_le_bytes());
    v
}

/// Splits a [`usage_value`].
pub(crate) fn usage_parts(v: &[u8; 16]) -> (u64, u64) {
    let mut m = [0u8; 8];
    let mut b = [0u8; 8];
    m.copy_from_slice(&v[..8]);
    b.copy_from_slice(&v[8..]);
    (u64::from_le_bytes(m), u64::from_le_bytes(b))
}

/// The one-byte code of an event kind in the event indexes: the variant's
/// index, as the row's postcard encoding writes it (a one-byte varint while
/// there are fewer than 128 kinds).
pub(crate) fn kind_code(kind: EventKind) -> Result<u8, Error> {
    let mut buf = [0u8; 1];
    let used = postcard::to_slice(&kind, &mut buf).map_err(|source| Error::Encode {
        entity: "delivery event",
        source,
    })?;
    match used {
        [code] => Ok(*code),
        _ => Err(Error::Internal("an event kind does not encode as one byte")),
    }
}

/// What the per-owner, -alias, -mailbox and -message event indexes hold
/// for each event: `at ‖ kind code`, so that `since` and `kinds` filters and
/// counts are answered from the index without reading the row.
pub(crate) type EventEntry = [u8; 9];

/// The [`EventEntry`] of an event.
pub(crate) fn event_entry(at: Timestamp, kind: u8) -> EventEntry {
    let mut v = [0u8; 9];
    v[..8].copy_from_slice(&ts_bytes(at));
    v[8] = kind;
    v
}

/// The time of an [`EventEntry`].
pub(crate) fn event_entry_at(v: &EventEntry) -> Timestamp {
    let mut t = [0u8; 8];
    t.copy_from_slice(&v[..8]);
    ts_from_bytes(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtpy_core::ids::UserId;

    #[test]
    fn timestamps_sort_as_bytes() {
        let ts = [i64::MIN, -86_400_000, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for w in ts.windows(2) {
            let a = ts_bytes(Timestamp::from_unix_millis(w[0]));
            let b = ts_bytes(Timestamp::from_unix_millis(w[1]));
            assert!(a < b, "{} !< {}", w[0], w[1]);
            let t = Timestamp::from_unix_millis(w[0]);
            assert_eq!(ts_from_bytes(ts_bytes(t)), t);
            let k = time_id(t, [7; 16]);
            assert_eq!((time_id_at(&k), time_id_id(&k)), (t, [7; 16]));
        }
    }

    #[test]
    fn usage_days_sort_and_round_trip() {
        let user = UsageSubject::User(UserId::new());
        let days = [i32::MIN, -1, 0, 1, 19_000, i32::MAX];
        for w in days.windows(2) {
            let a = usage_key(user, Day::from_days_since_epoch(w[0]));
            let b = usage_key(user, Day::from_days_since_epoch(w[1]));
            assert!(a < b);
            assert_eq!(usage_key_day(&a), Day::from_days_since_epoch(w[0]));
        }
        assert_eq!(usage_parts(&usage_value(7, 1 << 40)), (7, 1 << 40));
    }

    #[test]
    fn event_kinds_have_distinct_one_byte_codes() {
        use smtpy_core::model::EventKind::*;
        let kinds = [
            Accepted,
            Refused,
            Blocked,
            Quarantined,
            RateLimited,
            Delivered,
            Deferred,
            Failed,
            Bounced,
            Replied,
            Notified,
            AutoDisabled,
        ];
        let codes: Vec<u8> = kinds
            .iter()
            .map(|k| kind_code(*k).expect("one byte"))
            .collect();
        let expected: Vec<u8> = (0..kinds.len() as u8).collect();
        assert_eq!(codes, expected, "the variant index, in declaration order");
        let at = Timestamp::from_unix_millis(-5);
        let entry = event_entry(at, 7);
        assert_eq!((event_entry_at(&entry), entry[8]), (at, 7));
    }

    #[test]
    fn decode_rejects_bad_bytes_without_panicking() {
        use smtpy_core::model::Role;
        assert!(decode::<User>(&[]).is_err());
        assert!(decode::<User>(&[9, 1, 2, 3]).is_err());
        assert!(decode::<User>(&[RECORD_V1, 0xff, 0xff]).is_err());
        let user = User::new(
            smtpy_core::address::EmailAddress::parse("a@b.example").expect("valid address"),
            Role::User,
            Timestamp::from_unix_secs(1),
        );
        let mut bytes = encode(&user).expect("encodes");
        assert_eq!(decode::<User>(&bytes).expect("decodes"), user);
        bytes.push(0);
        assert!(
            decode::<User>(&bytes).is_err(),
            "trailing bytes are corruption"
        );
    }
}
