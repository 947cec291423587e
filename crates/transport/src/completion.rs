//! What the coordinator's and the nodes' Flight services share about a
//! streamed answer: how its end is recorded, and how they refuse the Flight
//! methods they do not offer.

use futures::{Stream, StreamExt};
use tonic::Status;

/// Metadata on a node's status that comes from the department's database,
/// not from the node or the connection to it: the coordinator relays such a
/// status unchanged instead of reporting the node unreachable.
pub const SOURCE_STATUS_KEY: &str = "x-exchange-source";

/// Calls its closure exactly once with how a stream ended: `ok` at its end,
/// `error: <message>` at its first error, or `cancelled` when it is dropped
/// before either (the consumer went away).
pub struct CompletionGuard<F: FnOnce(String)> {
    finish: Option<F>,
}

impl<F: FnOnce(String)> CompletionGuard<F> {
    pub fn new(finish: F) -> Self {
        CompletionGuard {
            finish: Some(finish),
        }
    }

    /// Records the end; later calls (and the drop) do nothing.
    pub fn finish(&mut self, status: String) {
        if let Some(finish) = self.finish.take() {
            finish(status);
        }
    }
}

impl<F: FnOnce(String)> Drop for CompletionGuard<F> {
    fn drop(&mut self) {
        self.finish("cancelled".into());
    }
}

/// Passes `frames` through `check` (which may count them, or turn one into
/// an error) and calls `finish` once when the stream ends, fails or is
/// dropped, as [`CompletionGuard`] describes.
pub fn watch_completion<S, T, C, F>(
    frames: S,
    mut check: C,
    finish: F,
) -> impl Stream<Item = Result<T, Status>> + Send
where
    S: Stream<Item = Result<T, Status>> + Send,
    T: Send,
    C: FnMut(&T) -> Result<(), Status> + Send,
    F: FnOnce(String) + Send,
{
    let mut guard = CompletionGuard::new(finish);
    frames
        .map(Some)
        .chain(futures::stream::once(async { None }))
        .filter_map(move |frame| {
            let out = match frame {
                None => {
                    guard.finish("ok".into());
                    None
                }
                Some(Ok(frame)) => match check(&frame) {
                    Ok(()) => Some(Ok(frame)),
                    Err(status) => {
                        guard.finish(format!("error: {}", status.message()));
                        Some(Err(status))
                    }
                },
                Some(Err(status)) => {
                    guard.finish(format!("error: {}", status.message()));
                    Some(Err(status))
                }
            };
            futures::future::ready(out)
        })
}

/// The answer to a Flight method a service does not offer: `UNIMPLEMENTED`,
/// naming what to use instead.
pub fn unsupported<T>(method: &str, instead: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "{method} is not offered: {instead}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn ends(items: Vec<Result<u32, Status>>, take: usize) -> (Vec<String>, usize) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let stream = watch_completion(
            futures::stream::iter(items),
            |n: &u32| {
                if *n == 99 {
                    Err(Status::resource_exhausted("quota"))
                } else {
                    Ok(())
                }
            },
            move |status| log.lock().unwrap().push(status),
        );
        let got = futures::executor::block_on(stream.take(take).collect::<Vec<_>>());
        let seen = seen.lock().unwrap().clone();
        (seen, got.len())
    }

    #[test]
    fn the_end_is_recorded_once_however_the_stream_ends() {
        assert_eq!(ends(vec![Ok(1), Ok(2)], 10), (vec!["ok".to_string()], 2));
        let (seen, _) = ends(vec![Ok(1), Err(Status::internal("boom")), Ok(3)], 10);
        assert_eq!(seen, vec!["error: boom".to_string()]);
        let (seen, got) = ends(vec![Ok(1), Ok(99), Ok(3)], 10);
        assert_eq!(seen, vec!["error: quota".to_string()]);
        assert_eq!(got, 3, "the checked frame becomes an error in place");
        let (seen, got) = ends(vec![Ok(1), Ok(2), Ok(3)], 1);
        assert_eq!((seen, got), (vec!["cancelled".to_string()], 1));
    }
}
