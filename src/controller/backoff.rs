//! The pause after a watch error. kube-runtime applies one backoff to the stream that
//! merges all of a controller's watches, and its default (0.8 s doubling to 30 s, reset
//! by any event) stalls every trigger while it sleeps: the five watches of the release
//! loop cut at once (an API server restart, a load balancer's idle timeout) cost five
//! errors in a row, 25 s in which no release hears of a change. This one starts at
//! 100 ms and doubles to 2 s, so the same cut costs about 3 s, and a dead API server is
//! still asked only every 2 s.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (now * 2).min(MAX);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::utils::Backoff;

    use super::*;

    #[test]
    fn five_errors_in_a_row_pause_about_three_seconds_and_an_event_resets() {
        let mut b = WatchBackoff::default();
        let five: Duration = b.by_ref().take(5).sum();
        assert_eq!(five, Duration::from_millis(3100));
        assert_eq!(b.by_ref().take(10).last(), Some(MAX), "capped");
        b.reset();
        assert_eq!(b.next(), Some(FIRST));
    }
}
