//! `wait`: returns by its timeout and validates the queue.

use std::sync::Arc;
use std::time::Duration;

use rex_transport::Transport;
use serde_json::json;

use crate::{submit, unique};

/// `wait` returns by its timeout (sooner is allowed), and validates the queue.
pub async fn case_wait_returns(t: Arc<dyn Transport>) {
    let queue = unique("wait");
    let start = std::time::Instant::now();
    t.wait(&queue, Duration::from_millis(100))
        .await
        .expect("wait");
    assert!(start.elapsed() < Duration::from_secs(5));
    submit(&t, &queue, json!({})).await;
    let start = std::time::Instant::now();
    t.wait(&queue, Duration::from_millis(100))
        .await
        .expect("wait");
    assert!(start.elapsed() < Duration::from_secs(5));
}
