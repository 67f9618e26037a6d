//! Running operations: each one a task of the connection's runtime, bounded in time, its AMQP
//! methods sent pipelined.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use super::{AmqpTransport, Inner, OPERATION_TIMEOUT};
use crate::Result;

/// Polls every future at once (in order, so pipelined AMQP methods go out in order).
pub(super) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
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

/// Starts every future in order — its first poll sends its AMQP method, so the methods go out
/// pipelined and in order — then awaits them one after the other. Unlike [`join_all`], the
/// waiting polls each future only when its turn comes: cheap for hundreds of publishes or
/// acknowledgements that complete together.
pub(super) async fn pipelined<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut early: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (future, output) in futures.iter_mut().zip(early.iter_mut()) {
            if let Poll::Ready(value) = future.as_mut().poll(cx) {
                *output = Some(value);
            }
        }
        Poll::Ready(())
    })
    .await;
    let mut outputs = Vec::with_capacity(futures.len());
    for (future, output) in futures.into_iter().zip(early) {
        outputs.push(match output {
            Some(value) => value,
            None => future.await,
        });
    }
    outputs
}

impl AmqpTransport {
    /// Run `f` as a task of the current runtime: a caller that stops waiting (a timeout, a
    /// `select!`) cannot leave a claimed message or a half-done settlement behind.
    pub(super) async fn spawned<T, F>(&self, f: impl FnOnce(Arc<Inner>) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        self.spawned_within(OPERATION_TIMEOUT, f).await
    }

    /// [`spawned`](Self::spawned) with another bound.
    pub(super) async fn spawned_within<T, F>(
        &self,
        limit: Duration,
        f: impl FnOnce(Arc<Inner>) -> F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let handle = self.inner.handle()?;
        let task = handle.spawn(f(Arc::clone(&self.inner)));
        self.bounded_within(limit, async {
            task.await
                .map_err(|e| self.inner.backend(format_args!("operation aborted: {e}")))?
        })
        .await
    }

    /// `op` within [`OPERATION_TIMEOUT`]; past it the connection is given up (see
    /// `Inner::no_reply`).
    pub(super) async fn bounded<T>(&self, op: impl Future<Output = Result<T>>) -> Result<T> {
        self.bounded_within(OPERATION_TIMEOUT, op).await
    }

    pub(super) async fn bounded_within<T>(
        &self,
        limit: Duration,
        op: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(limit, op).await {
            Ok(result) => result,
            Err(_) => Err(self.inner.no_reply(limit)),
        }
    }
}
