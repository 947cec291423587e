//! Answering a streaming call with its first items already in hand.
//!
//! hyper sends a response's headers as soon as the handler returns, and each
//! later piece (a data frame, the trailers) as it becomes ready, each in its
//! own write when they come apart. A short answer (one key lookup: a schema
//! frame, one batch, the end) therefore costs three writes and three wake-ups
//! of the reader unless the handler waits for its first item before it
//! returns. [`ready_first`] does that wait and also takes, without waiting,
//! whatever else is already there, so a short answer leaves in one write
//! and a long one only starts once its first rows exist.

use futures::stream::{self, BoxStream, Stream, StreamExt};
use futures::FutureExt;

/// Waits for the stream's first item that is not preamble (`is_preamble`:
/// a schema frame, say) or for its end, takes up to `most` items in all
/// including those that are ready at once after it, and returns a stream
/// that yields them and then the rest. An exhausted stream is noticed here
/// too, so its end travels with its last item.
pub async fn ready_first<S, T>(
    mut inner: S,
    most: usize,
    is_preamble: impl Fn(&T) -> bool,
) -> BoxStream<'static, T>
where
    S: Stream<Item = T> + Send + Unpin + 'static,
    T: Send + 'static,
{
    let most = most.max(1);
    let mut ready = Vec::new();
    loop {
        let Some(item) = inner.next().await else {
            return stream::iter(ready).boxed();
        };
        let preamble = is_preamble(&item);
        ready.push(item);
        if !preamble || ready.len() >= most {
            break;
        }
    }
    while ready.len() < most {
        match inner.next().now_or_never() {
            Some(Some(item)) => ready.push(item),
            Some(None) => return stream::iter(ready).boxed(),
            None => break,
        }
    }
    stream::iter(ready).chain(inner).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn yields_everything_once_in_order() {
        let s = ready_first(stream::iter(1..=10), 3, |_| false).await;
        assert_eq!(s.collect::<Vec<_>>().await, (1..=10).collect::<Vec<_>>());
        let s = ready_first(stream::iter(Vec::<u8>::new()), 3, |_| false).await;
        assert!(s.collect::<Vec<_>>().await.is_empty());
    }

    #[tokio::test]
    async fn waits_for_the_first_item_only() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let rx = tokio_stream::wrappers::ReceiverStream::new(rx);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            tx.send(1).await.unwrap();
            tx.send(2).await.unwrap();
            // The third item comes later: ready_first must not wait for it.
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            tx.send(3).await.unwrap();
        });
        let mut s = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            ready_first(rx, 8, |_| false),
        )
        .await
        .expect("returns once the first item is there");
        assert_eq!(s.next().now_or_never(), Some(Some(1)));
        assert_eq!(s.next().now_or_never(), Some(Some(2)));
        assert_eq!(s.next().now_or_never(), None, "the rest is still to come");
        sender.abort();
    }

    #[tokio::test]
    async fn waits_past_the_preamble() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let rx = tokio_stream::wrappers::ReceiverStream::new(rx);
        tx.send("schema").await.unwrap();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            tx.send("batch").await.unwrap();
        });
        let s = ready_first(rx, 8, |item| *item == "schema").await;
        sender.await.unwrap();
        assert_eq!(s.collect::<Vec<_>>().await, ["schema", "batch"]);
    }
}
