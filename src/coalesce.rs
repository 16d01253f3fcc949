//! Requests from concurrent workers → batched AWS calls, without waiting to fill a batch.
//!
//! Deleting a finished message and recording a published page are one small write each, made
//! by many workers at once. A [`Coalescer`] gathers requests that arrive while a call is in
//! flight, and optionally for a short linger after the first, into one call
//! (DeleteMessageBatch, BatchWriteItem). Under load, calls fall to a fraction per message.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// Batches requests of type `T` into calls that answer each with an `R`.
pub struct Coalescer<T, R> {
    tx: mpsc::UnboundedSender<(T, oneshot::Sender<R>)>,
}

impl<T: Send + 'static, R: Send + 'static> Coalescer<T, R> {
    /// Starts the batching task on the current runtime. `call` takes up to `max` requests and
    /// returns one answer per request, in order. After the first request of a batch it waits
    /// up to `linger` for more (zero: it takes only what is already waiting).
    pub fn new<F, Fut>(max: usize, linger: Duration, call: F) -> Coalescer<T, R>
    where
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<R>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<(T, oneshot::Sender<R>)>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + linger;
                while batch.len() < max {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) if linger.is_zero() => break,
                        Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(next)) => batch.push(next),
                            _ => break,
                        },
                    }
                }
                let (requests, replies): (Vec<T>, Vec<oneshot::Sender<R>>) =
                    batch.into_iter().unzip();
                for (reply, answer) in replies.into_iter().zip(call(requests).await) {
                    // The worker may have given up waiting (shutdown); nothing to tell it.
                    let _ = reply.send(answer);
                }
            }
        });
        Coalescer { tx }
    }

    /// Sends one request with whatever others are waiting; `None` if the batching task is gone
    /// (the runtime is shutting down).
    pub async fn submit(&self, request: T) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((request, reply)).ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_requests_share_calls_and_get_their_own_answers() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let doubler = Arc::new(Coalescer::new(10, Duration::ZERO, move |xs: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                xs.into_iter().map(|x| x * 2).collect()
            }
        }));
        let mut tasks = Vec::new();
        for i in 0..25 {
            let d = doubler.clone();
            tasks.push(tokio::spawn(async move { d.submit(i).await }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.expect("join"), Some(i as u32 * 2));
        }
        let n = calls.load(Ordering::SeqCst);
        assert!((3..25).contains(&n), "{n} calls for 25 requests");
        // Alone, a request goes at once.
        assert_eq!(doubler.submit(7).await, Some(14));
    }

    #[tokio::test]
    async fn lingering_gathers_requests_that_arrive_soon_after() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let echo = Arc::new(Coalescer::new(
            10,
            Duration::from_millis(200),
            move |xs: Vec<u32>| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move { xs }
            },
        ));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let e = echo.clone();
            tasks.push(tokio::spawn(async move { e.submit(i).await }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.expect("join"), Some(i as u32));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
