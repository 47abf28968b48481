//! The delivery event log: [`EventStore`].
//!
//! Each event is a row in `events`, an entry `at ‖ id` in `events_by_time`
//! and an entry `parent ‖ id` in the index of each of its owner, alias,
//! mailbox and message that is set (see the `schema` module). The index
//! entries carry the event's time and kind code, so `since` and `kinds` are
//! checked without reading the row.

use std::cell::RefMut;
use std::collections::BTreeSet;
use std::ops::Bound;

use async_trait::async_trait;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use smtpy_core::StoreResult;
use smtpy_core::ids::UserId;
use smtpy_core::model::{DeliveryEvent, EventFilter};
use smtpy_core::store::{Access, EventStore, Page, PageRequest};
use smtpy_core::time::Timestamp;

use crate::codec::{
    EventEntry, Id, Pair, TimeId, decode, encode, event_entry, event_entry_at, kind_code, pair,
    second, time_id, time_id_id,
};
use crate::error::{Error, exists};
use crate::schema::{
    EVENTS, EVENTS_BY_ALIAS, EVENTS_BY_MAILBOX, EVENTS_BY_MESSAGE, EVENTS_BY_OWNER, Tx,
};
use crate::store::{RedbStore, load, load_indexed};

/// An event index: `parent ‖ event id` → [`EventEntry`].
type EventIndex = TableDefinition<'static, &'static [u8; 32], &'static [u8; 9]>;

/// An event index open in a write transaction.
type EventIndexTable<'t> = redb::Table<'t, &'static [u8; 32], &'static [u8; 9]>;

/// Which field an index is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dimension {
    Message,
    Alias,
    Mailbox,
    Owner,
}

/// The index to walk for `filter` seen by `access`, and its parent key:
/// the most selective field the filter (or the owner scope) sets.
fn pick_index(filter: &EventFilter, access: Access) -> Option<(Dimension, EventIndex, Id)> {
    if let Some(m) = filter.message {
        return Some((Dimension::Message, EVENTS_BY_MESSAGE, m.to_bytes()));
    }
    if let Some(a) = filter.alias {
        return Some((Dimension::Alias, EVENTS_BY_ALIAS, a.to_bytes()));
    }
    if let Some(m) = filter.mailbox {
        return Some((Dimension::Mailbox, EVENTS_BY_MAILBOX, m.to_bytes()));
    }
    match access {
        Access::Owner(u) => Some((Dimension::Owner, EVENTS_BY_OWNER, u.to_bytes())),
        Access::System => None,
    }
}

/// True if `filter` sets a field other than `dimension` (whose entries the
/// index walk already restricts to), so the row must be read to decide.
fn needs_row(filter: &EventFilter, dimension: Dimension) -> bool {
    (filter.message.is_some() && dimension != Dimension::Message)
        || (filter.alias.is_some() && dimension != Dimension::Alias)
        || (filter.mailbox.is_some() && dimension != Dimension::Mailbox)
}

/// The `since` and `kinds` part of a filter, checked on index entries.
struct Prefilter {
    since: Option<Timestamp>,
    /// Kind codes; empty: every kind.
    kinds: Vec<u8>,
}

impl Prefilter {
    fn new(filter: &EventFilter) -> Result<Self, Error> {
        Ok(Self {
            since: filter.since,
            kinds: filter
                .kinds
                .iter()
                .map(|k| kind_code(*k))
                .collect::<Result<_, _>>()?,
        })
    }

    fn kind_ok(&self, code: u8) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&code)
    }

    fn passes(&self, entry: &EventEntry) -> bool {
        self.since.is_none_or(|s| event_entry_at(entry) >= s) && self.kind_ok(entry[8])
    }
}

/// The index entries of `event` other than the time index: (index, parent).
fn dimensions(event: &DeliveryEvent) -> [(Dimension, Option<Id>); 4] {
    [
        (Dimension::Owner, event.owner.map(|u| u.to_bytes())),
        (Dimension::Alias, event.alias.map(|a| a.to_bytes())),
        (Dimension::Mailbox, event.mailbox.map(|m| m.to_bytes())),
        (Dimension::Message, event.message.map(|m| m.to_bytes())),
    ]
}

/// The open index table of `dimension` in `tx`.
fn index_of<'a, 't>(
    tx: &'a Tx<'t>,
    dimension: Dimension,
) -> Result<RefMut<'a, EventIndexTable<'t>>, Error> {
    match dimension {
        Dimension::Owner => tx.events_by_owner(),
        Dimension::Alias => tx.events_by_alias(),
        Dimension::Mailbox => tx.events_by_mailbox(),
        Dimension::Message => tx.events_by_message(),
    }
}

/// Writes an event's row and index entries (the caller checked the id is free).
fn insert_event(tx: &Tx<'_>, event: &DeliveryEvent) -> Result<(), Error> {
    let id = event.id.to_bytes();
    let code = kind_code(event.kind)?;
    let entry = event_entry(event.at, code);
    tx.events()?.insert(&id, encode(event)?.as_slice())?;
    tx.events_by_time()?.insert(&time_id(event.at, id), code)?;
    for (dimension, parent) in dimensions(event) {
        if let Some(parent) = parent {
            index_of(tx, dimension)?.insert(&pair(parent, id), &entry)?;
        }
    }
    Ok(())
}

/// Removes an event's row and every index entry.
fn remove_event(tx: &Tx<'_>, event: &DeliveryEvent) -> Result<(), Error> {
    let id = event.id.to_bytes();
    tx.events()?.remove(&id)?;
    tx.events_by_time()?.remove(&time_id(event.at, id))?;
    for (dimension, parent) in dimensions(event) {
        if let Some(parent) = parent {
            index_of(tx, dimension)?.remove(&pair(parent, id))?;
        }
    }
    Ok(())
}

/// Deletes every event whose owner is `owner` (user deletion).
pub(crate) fn delete_events_of_owner(tx: &Tx<'_>, owner: UserId) -> Result<u64, Error> {
    let parent = owner.to_bytes();
    let events: Vec<DeliveryEvent> = {
        let index = tx.events_by_owner()?;
        let rows = tx.events()?;
        let (start, end) = (pair(parent, [0; 16]), pair(parent, [0xff; 16]));
        let mut out = Vec::new();
        for entry in index.range::<&Pair>(&start..=&end)? {
            let (k, _) = entry?;
            out.push(load_indexed(&*rows, &second(k.value()))?);
        }
        out
    };
    for e in &events {
        remove_event(tx, e)?;
    }
    Ok(events.len() as u64)
}

/// Range of `parent ‖ id` keys with `id` before `before` (exclusive), or
/// all of `parent`'s without it.
fn children_before(parent: Id, before: Option<Id>) -> (Bound<Pair>, Bound<Pair>) {
    let end = match before {
        Some(b) => Bound::Excluded(pair(parent, b)),
        None => Bound::Included(pair(parent, [0xff; 16])),
    };
    (Bound::Included(pair(parent, [0; 16])), end)
}

#[async_trait]
impl EventStore for RedbStore {
    async fn append_events(&self, events: &[DeliveryEvent]) -> StoreResult<()> {
        let events = events.to_vec();
        self.write_lazy(move |tx| {
            if events.is_empty() {
                tx.unchanged();
                return Ok(());
            }
            let mut ids = BTreeSet::new();
            for event in &events {
                let id = event.id.to_bytes();
                if !ids.insert(id) || tx.events()?.get(&id)?.is_some() {
                    return Err(exists("delivery event"));
                }
                insert_event(tx, event)?;
            }
            Ok(())
        })
        .await
    }

    async fn list_events(
        &self,
        access: Access,
        filter: &EventFilter,
        page: PageRequest,
    ) -> StoreResult<Page<DeliveryEvent>> {
        let filter = filter.clone();
        self.read(move |txn| {
            let limit = page.effective_limit();
            let before: Option<Id> = page.after.map(|c| *c.last_id().as_bytes());
            let pre = Prefilter::new(&filter)?;
            let visible = |e: &DeliveryEvent| access.permits_optional(e.owner) && filter.matches(e);
            let rows = txn.open_table(EVENTS)?;
            let mut out: Vec<DeliveryEvent> = Vec::new();
            match pick_index(&filter, access) {
                Some((_, def, parent)) => {
                    let index = txn.open_table(def)?;
                    let (start, end) = children_before(parent, before);
                    for entry in index.range::<&Pair>((start.as_ref(), end.as_ref()))?.rev() {
                        let (k, v) = entry?;
                        if !pre.passes(v.value()) {
                            continue;
                        }
                        let row: DeliveryEvent = load_indexed(&rows, &second(k.value()))?;
                        if visible(&row) {
                            out.push(row);
                            if out.len() > limit {
                                break;
                            }
                        }
                    }
                }
                None => {
                    let end = before.map_or(Bound::Unbounded, Bound::Excluded);
                    for entry in rows.range::<&Id>((Bound::Unbounded, end.as_ref()))?.rev() {
                        let (_, v) = entry?;
                        let row: DeliveryEvent = decode(v.value())?;
                        if visible(&row) {
                            out.push(row);
                            if out.len() > limit {
                                break;
                            }
                        }
                    }
                }
            }
            Ok(Page::from_overfetch(out, limit, |e| *e.id.as_uuid()))
        })
        .await
    }

    async fn count_events(&self, filter: &EventFilter) -> StoreResult<u64> {
        let filter = filter.clone();
        self.read(move |txn| {
            let pre = Prefilter::new(&filter)?;
            let mut n = 0u64;
            match pick_index(&filter, Access::System) {
                Some((dimension, def, parent)) => {
                    let index = txn.open_table(def)?;
                    let rows = txn.open_table(EVENTS)?;
                    let read_rows = needs_row(&filter, dimension);
                    let (start, end) = children_before(parent, None);
                    for entry in index.range::<&Pair>((start.as_ref(), end.as_ref()))? {
                        let (k, v) = entry?;
                        if !pre.passes(v.value()) {
                            continue;
                        }
                        if read_rows {
                            let row: DeliveryEvent = load_indexed(&rows, &second(k.value()))?;
                            if !filter.matches(&row) {
                                continue;
                            }
                        }
                        n += 1;
                    }
                }
                None => {
                    let by_time = txn.open_table(crate::schema::EVENTS_BY_TIME)?;
                    if filter.since.is_none() && pre.kinds.is_empty() {
                        return Ok(by_time.len()?);
                    }
                    let start: Bound<TimeId> = filter
                        .since
                        .map_or(Bound::Unbounded, |s| Bound::Included(time_id(s, [0; 16])));
                    for entry in by_time.range::<&TimeId>((start.as_ref(), Bound::Unbounded))? {
                        let (_, code) = entry?;
                        if pre.kind_ok(code.value()) {
                            n += 1;
                        }
                    }
                }
            }
            Ok(n)
        })
        .await
    }

    async fn purge_events(&self, older_than: Timestamp) -> StoreResult<u64> {
        self.write(move |tx| {
            let due: Vec<DeliveryEvent> = {
                let by_time = tx.events_by_time()?;
                let rows = tx.events()?;
                let end = time_id(older_than, [0xff; 16]);
                let mut out = Vec::new();
                for entry in by_time.range::<&TimeId>(..=&end)? {
                    let (k, _) = entry?;
                    let id = time_id_id(k.value());
                    let row: DeliveryEvent = load(&*rows, &id)?.ok_or_else(|| {
                        Error::corrupt("delivery event", "an index points at a missing row")
                    })?;
                    out.push(row);
                }
                out
            };
            if due.is_empty() {
                tx.unchanged();
            }
            for e in &due {
                remove_event(tx, e)?;
            }
            Ok(due.len() as u64)
        })
        .await
    }
}
