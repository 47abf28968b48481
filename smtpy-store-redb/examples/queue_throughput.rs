//! Enqueue throughput with group commit: how many 1 KB messages per second
//! `enqueue` makes durable with 1, 10 and 50 concurrent enqueuers (SMTP
//! sessions), and how many fsyncs (redb commits) each message costs.
//!
//! ```sh
//! cargo run --release -p smtpy-store-redb --example queue_throughput
//! # elsewhere than the system's temporary directory, and for longer:
//! SMTPY_QUEUE_DIR=/var/lib/smtpy SMTPY_QUEUE_SECS=10 \
//!     cargo run --release -p smtpy-store-redb --example queue_throughput
//! ```
//!
//! Each run opens a fresh store, starts the enqueuers as tasks on a
//! two-worker tokio runtime (each awaits its enqueue before sending the
//! next, as an SMTP session awaits it before answering 250) and counts for
//! a fixed time. A redb commit with `Durability::Immediate` is one
//! `fdatasync` of the file, so `commits / messages` is fsyncs per message
//! (check with `strace -f -c -e trace=fdatasync,fsync`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use smtpy_core::address::EmailAddress;
use smtpy_core::ids::MessageId;
use smtpy_core::model::{MessageKind, QueuedMessage, QueuedRecipient};
use smtpy_core::store::QueueStore;
use smtpy_core::time::{Clock, SystemClock};
use smtpy_store_redb::RedbStore;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A 1 KB message to one recipient, as the SMTP layer would queue it.
fn message(body: &Arc<[u8]>, rcpt: &EmailAddress, sender: &EmailAddress) -> QueuedMessage {
    let now = SystemClock.now();
    let mut r = QueuedRecipient::new(rcpt.clone());
    r.original = Some(rcpt.clone());
    QueuedMessage {
        id: MessageId::new(),
        kind: MessageKind::Forward,
        reverse_path: Some(sender.clone()),
        original_sender: Some(sender.clone()),
        body: Arc::clone(body),
        recipients: vec![r],
        owner: None,
        received_at: now,
        next_attempt_at: now,
        expires_at: now.saturating_add(Duration::from_secs(5 * 86_400)),
        attempts: 0,
        held: false,
        correlation_id: "bench".into(),
    }
}

struct Run {
    messages: u64,
    commits: u64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn run(concurrency: usize, secs: f64) -> Result<Run, Error> {
    let store = match std::env::var_os("SMTPY_QUEUE_DIR") {
        Some(dir) => {
            let path =
                std::path::Path::new(&dir).join(format!("queue-bench-{}.redb", MessageId::new()));
            let store = RedbStore::open(&path)?;
            // Removed when the run ends (the store keeps it open meanwhile).
            std::fs::remove_file(&path)?;
            store
        }
        None => RedbStore::builder().open_temporary()?,
    };
    let store = Arc::new(store);
    let body: Arc<[u8]> = {
        let mut b = b"Subject: bench\r\n\r\n".to_vec();
        b.resize(1022, b'x');
        b.extend_from_slice(b"\r\n");
        Arc::from(b)
    };
    let rcpt = EmailAddress::parse("me@mail.example")?;
    let sender = EmailAddress::parse("srs0=ab=cd=outside.example=bob@alias.example")?;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (store, body, rcpt, sender) = (
                Arc::clone(&store),
                Arc::clone(&body),
                rcpt.clone(),
                sender.clone(),
            );
            let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let m = message(&body, &rcpt, &sender);
                    let t = Instant::now();
                    store.enqueue(&m).await?;
                    latencies.push(t.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, Error>(latencies)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let (commits, messages) = store.enqueue_commit_counts();
    assert_eq!(messages, done.load(Ordering::Relaxed));
    Ok(Run {
        messages,
        commits,
        secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}

fn main() -> Result<(), Error> {
    let secs: f64 = std::env::var("SMTPY_QUEUE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!("enqueue, 1 KB bodies, {secs} s per run");
    println!(
        "{:>11} {:>10} {:>10} {:>12} {:>10} {:>9} {:>9}",
        "enqueuers", "messages", "msgs/s", "fsyncs/msg", "batch", "p50 ms", "p99 ms"
    );
    for concurrency in [1, 10, 50] {
        let r = runtime.block_on(run(concurrency, secs))?;
        println!(
            "{:>11} {:>10} {:>10.0} {:>12.3} {:>10.1} {:>9.2} {:>9.2}",
            concurrency,
            r.messages,
            r.messages as f64 / r.secs,
            r.commits as f64 / r.messages as f64,
            r.messages as f64 / r.commits as f64,
            r.p50_ms,
            r.p99_ms,
        );
    }
    Ok(())
}
