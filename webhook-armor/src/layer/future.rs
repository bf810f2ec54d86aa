use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;

/// Response future of [`WebhookArmor`](super::WebhookArmor).
///
/// The pipeline awaits the body and the idempotency store before calling the
/// inner service, so the future is boxed; one allocation per request is
/// noise next to an HMAC and a store round trip.
pub struct ResponseFuture<T> {
    pub(super) inner: BoxFuture<'static, T>,
}

impl<T> Future for ResponseFuture<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.inner.as_mut().poll(cx)
    }
}

impl<T> fmt::Debug for ResponseFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
