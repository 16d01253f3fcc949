//! Where time comes from: the one clock the committer, the state stores, the follow-up sweeper
//! and the metrics read, so a test can run them on a clock it controls.
//!
//! Decisions that outlive a process (a window's end, a claim's lease, an item's expiry) are
//! in Unix seconds, so they compare across tasks and restarts. In production those seconds
//! are the system clock's; a test's clock follows tokio's, which a paused runtime advances at
//! will, so an hour-long window ends without an hour of waiting.

use std::sync::Arc;

/// A source of Unix time in seconds. Cheap to clone; clones read the same time.
#[derive(Debug, Clone)]
pub struct Clock(Arc<Source>);

#[derive(Debug)]
enum Source {
    System,
    /// `start` Unix seconds at tokio instant `at`, moving as tokio's clock moves.
    Tokio {
        start: i64,
        at: tokio::time::Instant,
    },
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(Source::System))
    }

    /// A clock that reads `start` now and then moves with tokio's clock: in a test with paused
    /// time, `tokio::time::advance` moves it.
    pub fn tokio(start: i64) -> Clock {
        Clock(Arc::new(Source::Tokio {
            start,
            at: tokio::time::Instant::now(),
        }))
    }

    /// Now, in Unix seconds.
    pub fn now(&self) -> i64 {
        match &*self.0 {
            Source::System => chrono::Utc::now().timestamp(),
            Source::Tokio { start, at } => start + at.elapsed().as_secs() as i64,
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_with_paused_time() {
        let clock = Clock::tokio(1_000);
        assert_eq!(clock.now(), 1_000);
        tokio::time::advance(std::time::Duration::from_secs(3_600)).await;
        assert_eq!(clock.clone().now(), 4_600);
    }
}
