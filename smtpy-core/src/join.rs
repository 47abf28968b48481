//! Running borrowed futures concurrently without spawning.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Polls every future on the current task until all are done, and returns
/// their outputs in order. Unlike spawning, the futures may borrow from the
/// caller (no `'static`, no `Send`).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let words = ["a", "bb", "ccc"];
/// let lens = smtpy_core::join::join_all(words.iter().map(|w| async move { w.len() }).collect()).await;
/// assert_eq!(lens, vec![1, 2, 3]);
/// # });
/// ```
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
