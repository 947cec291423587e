//! Page tokens for the list RPCs (`Catalog.Search`, `Access.Pending`,
//! `Access.ListRequests`, `Access.ListGrants`, `Disputes.List`, `Audit.Log`).
//!
//! A request with `page_size` gets at most that many items and, when more
//! remain, a `next_page_token`; sending the same request again with that
//! token gets the next page. `page_size` 0 without a token keeps v1's
//! behaviour: the whole list.
//!
//! A token is the position of the next page, signed with an HMAC key this
//! coordinator draws at start (on a shared PostgreSQL state: that the first
//! replica drew and stored, so every replica accepts the others' tokens),
//! and bound to the caller's department, the RPC and every other field of
//! the request. So a token that was altered or made up, that another
//! department presents, that comes with a different request, that is over
//! an hour old, or that an earlier run of a sled coordinator issued is
//! refused, naming which. Positions count in each
//! list's own order; the audit log only grows at its end, so its pages never
//! shift.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use exchange_transport::refusal::Refusal;
use ring::hmac;
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::registry::now_unix;

/// The largest page a list RPC returns.
pub const MAX_PAGE_SIZE: u32 = 1_000;
/// How long a page token stays valid.
pub const TOKEN_LIFETIME_SECS: i64 = 3_600;

/// Issues and checks page tokens.
pub struct Pages {
    key: hmac::Key,
}

impl Pages {
    /// Pages whose tokens every coordinator sharing `db` accepts: the key
    /// is drawn once, by the first replica, and kept in the shared state
    /// (so a token also outlives a restart there). On sled, one process
    /// holds the store: a key of its own, drawn at start.
    pub fn for_store(db: &exchange_storage::Db) -> Result<Pages, exchange_storage::StorageError> {
        if !db.is_shared() {
            return Ok(Pages::default());
        }
        let mut fresh = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut fresh)
            .expect("the system has randomness for the page-token key");
        let key = db
            .tree("federation")?
            .update::<String, _>("page_token_key", |old| {
                old.or_else(|| Some(hex::encode(fresh)))
            })?
            .unwrap_or_else(|| hex::encode(fresh));
        let bytes = hex::decode(&key).unwrap_or_else(|_| fresh.to_vec());
        Ok(Pages {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        })
    }
}

impl Default for Pages {
    fn default() -> Self {
        let rng = ring::rand::SystemRandom::new();
        Pages {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &rng)
                .expect("the system has randomness for the page-token key"),
        }
    }
}

/// What a token says: whose, which request, where the next page starts.
#[derive(Serialize, Deserialize)]
struct Cursor {
    caller: String,
    rpc: String,
    /// SHA-256 of the request with its paging fields cleared.
    request: String,
    offset: u64,
    issued_unix: i64,
}

/// The paging fields of one request, and what identifies the rest of it.
pub struct PageAsk<'a> {
    pub caller: &'a str,
    pub rpc: &'a str,
    /// The request encoded with `page_size` and `page_token` cleared.
    pub request: &'a [u8],
    pub page_size: u32,
    pub page_token: &'a str,
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(&ring::digest::digest(&ring::digest::SHA256, bytes).as_ref()[..16])
}

impl Pages {
    /// The page of `items` the request asks for, and the token of the next
    /// page (empty at the end).
    pub fn page<T>(
        &self,
        ask: &PageAsk<'_>,
        mut items: Vec<T>,
    ) -> Result<(Vec<T>, String), Status> {
        if ask.page_size > MAX_PAGE_SIZE {
            return Err(Refusal::InvalidRequest.status(format!(
                "page_size {} is too large: give 1 to {MAX_PAGE_SIZE} (0 for everything at once)",
                ask.page_size
            )));
        }
        let offset = match ask.page_token {
            "" => 0,
            token => self.open(ask, token)?,
        };
        if ask.page_size == 0 && offset == 0 {
            return Ok((items, String::new()));
        }
        let size = match ask.page_size {
            0 => MAX_PAGE_SIZE,
            n => n,
        } as usize;
        let start = (offset as usize).min(items.len());
        let end = start.saturating_add(size).min(items.len());
        let next = if end < items.len() {
            self.seal(ask, end as u64)
        } else {
            String::new()
        };
        items.truncate(end);
        items.drain(..start);
        Ok((items, next))
    }

    fn seal(&self, ask: &PageAsk<'_>, offset: u64) -> String {
        let cursor = Cursor {
            caller: ask.caller.to_string(),
            rpc: ask.rpc.to_string(),
            request: digest(ask.request),
            offset,
            issued_unix: now_unix(),
        };
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cursor).unwrap_or_default());
        let tag = URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, body.as_bytes()).as_ref());
        format!("{body}.{tag}")
    }

    /// The offset a token carries, once it is shown to be this
    /// coordinator's, for this caller and this request, and fresh.
    fn open(&self, ask: &PageAsk<'_>, token: &str) -> Result<u64, Status> {
        let forged = || {
            Refusal::InvalidRequest.status(
                "page_token is not one this coordinator issued (altered, made up, or issued before it restarted): send the request again without page_token",
            )
        };
        let (body, tag) = token.split_once('.').ok_or_else(forged)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| forged())?;
        hmac::verify(&self.key, body.as_bytes(), &tag).map_err(|_| forged())?;
        let cursor: Cursor = URL_SAFE_NO_PAD
            .decode(body)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(forged)?;
        if cursor.caller != ask.caller {
            return Err(Status::permission_denied(format!(
                "page_token was issued to {}, not to {}: page tokens are not shared",
                cursor.caller, ask.caller
            )));
        }
        if cursor.rpc != ask.rpc || cursor.request != digest(ask.request) {
            return Err(Refusal::InvalidRequest.status(
                "page_token belongs to a different request: send every field but page_token as on the first page",
            ));
        }
        if now_unix() - cursor.issued_unix > TOKEN_LIFETIME_SECS {
            return Err(Refusal::InvalidRequest.status(format!(
                "page_token is stale (issued over {} minutes ago): send the request again without page_token",
                TOKEN_LIFETIME_SECS / 60
            )));
        }
        Ok(cursor.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask<'a>(caller: &'a str, request: &'a [u8], size: u32, token: &'a str) -> PageAsk<'a> {
        PageAsk {
            caller,
            rpc: "Access.ListGrants",
            request,
            page_size: size,
            page_token: token,
        }
    }

    #[test]
    fn pages_walk_the_list_and_refuse_foreign_tokens() {
        let pages = Pages::default();
        let items: Vec<u32> = (0..25).collect();
        let (first, token) = pages
            .page(&ask("tax", b"q", 10, ""), items.clone())
            .unwrap();
        assert_eq!(first, (0..10).collect::<Vec<_>>());
        let (second, token2) = pages
            .page(&ask("tax", b"q", 10, &token), items.clone())
            .unwrap();
        assert_eq!(second, (10..20).collect::<Vec<_>>());
        let (last, end) = pages
            .page(&ask("tax", b"q", 10, &token2), items.clone())
            .unwrap();
        assert_eq!((last, end), ((20..25).collect::<Vec<_>>(), String::new()));
        // Everything at once without page_size, as v1 did.
        assert_eq!(
            pages
                .page(&ask("tax", b"q", 0, ""), items.clone())
                .unwrap()
                .0
                .len(),
            25
        );

        let refused = |a: PageAsk<'_>| pages.page(&a, items.clone()).unwrap_err();
        let other = refused(ask("hrss", b"q", 10, &token));
        assert_eq!(other.code(), tonic::Code::PermissionDenied);
        assert!(refused(ask("tax", b"other filter", 10, &token))
            .message()
            .contains("different request"));
        let mut altered = token.clone();
        altered.insert(3, 'x');
        assert!(refused(ask("tax", b"q", 10, &altered))
            .message()
            .contains("not one this coordinator issued"));
        assert!(refused(ask("tax", b"q", 10, "garbage"))
            .message()
            .contains("not one"));
        // A token from an earlier run (another key) reads as not ours.
        let earlier = Pages::default()
            .page(&ask("tax", b"q", 10, ""), items.clone())
            .unwrap()
            .1;
        assert!(refused(ask("tax", b"q", 10, &earlier))
            .message()
            .contains("restarted"));
        assert!(refused(ask("tax", b"q", 5000, ""))
            .message()
            .contains("page_size"));
    }

    #[test]
    fn an_old_token_is_stale() {
        let pages = Pages::default();
        let cursor = Cursor {
            caller: "tax".into(),
            rpc: "Access.ListGrants".into(),
            request: digest(b"q"),
            offset: 10,
            issued_unix: now_unix() - TOKEN_LIFETIME_SECS - 5,
        };
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cursor).unwrap());
        let tag = URL_SAFE_NO_PAD.encode(hmac::sign(&pages.key, body.as_bytes()).as_ref());
        let token = format!("{body}.{tag}");
        let e = pages
            .page(&ask("tax", b"q", 10, &token), vec![1, 2, 3])
            .unwrap_err();
        assert!(e.message().contains("stale"), "{e:?}");
    }
}
