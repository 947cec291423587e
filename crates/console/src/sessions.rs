//! Sign-in sessions: who, under which certificate, is using the console.
//!
//! The certificate says the department and role; the person gives their
//! name at sign-in, for every kind of user (the bureau's operators too).
//! Sign-in starts a fresh session: a random id in an `HttpOnly`,
//! `SameSite=Strict` cookie, bound to the certificate's serial, so a
//! session cookie taken to another certificate is worthless. Each
//! session's CSRF token is an HMAC of its id under a key drawn at start:
//! a token from one session (or from before sign-in) is refused in
//! another. Sessions live in memory, at most [`MAX_SESSIONS`], and end
//! after [`IDLE`] without a request; a restart signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::SecureRandom;

/// The session cookie's name.
pub const COOKIE: &str = "exchange_session";
/// A session unused this long has ended.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);
/// Sessions held at once; past this the least recently used ends.
pub const MAX_SESSIONS: usize = 20_000;

struct SignedIn {
    serial: String,
    user: String,
    last_seen: Instant,
}

/// Every open session, and the key their CSRF tokens are made with.
pub struct Sessions {
    csrf_key: ring::hmac::Key,
    rng: ring::rand::SystemRandom,
    open: Mutex<HashMap<String, SignedIn>>,
}

impl Sessions {
    pub fn new() -> anyhow::Result<Sessions> {
        let rng = ring::rand::SystemRandom::new();
        let csrf_key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .map_err(|_| anyhow::anyhow!("no randomness for the console's CSRF key"))?;
        Ok(Sessions {
            csrf_key,
            rng,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Starts a session for `user` on the certificate `serial`, ending
    /// `previous` (the browser's session before this sign-in, if any).
    /// Returns the new id, or `None` without randomness.
    pub fn start(&self, serial: &str, user: &str, previous: Option<&str>) -> Option<String> {
        let mut bytes = [0u8; 32];
        self.rng.fill(&mut bytes).ok()?;
        let id = hex::encode(bytes);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(previous) = previous {
            open.remove(previous);
        }
        open.retain(|_, s| s.last_seen.elapsed() < IDLE);
        if open.len() >= MAX_SESSIONS {
            let oldest = open
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                open.remove(&oldest);
            }
        }
        open.insert(
            id.clone(),
            SignedIn {
                serial: serial.to_string(),
                user: user.to_string(),
                last_seen: Instant::now(),
            },
        );
        Some(id)
    }

    /// The name signed in under session `id`, if that session is open and
    /// was started with the certificate `serial`.
    pub fn user(&self, id: &str, serial: &str) -> Option<String> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let session = open.get_mut(id)?;
        if session.serial != serial || session.last_seen.elapsed() >= IDLE {
            return None;
        }
        session.last_seen = Instant::now();
        Some(session.user.clone())
    }

    /// The CSRF token of session `id`.
    pub fn csrf(&self, id: &str) -> String {
        hex::encode(ring::hmac::sign(&self.csrf_key, id.as_bytes()).as_ref())
    }

    /// Whether `given` is session `id`'s CSRF token.
    pub fn csrf_matches(&self, id: &str, given: &str) -> bool {
        let given = hex::decode(given).unwrap_or_default();
        ring::hmac::verify(&self.csrf_key, id.as_bytes(), &given).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_belongs_to_its_certificate_and_its_token_to_it_alone() {
        let sessions = Sessions::new().unwrap();
        let a = sessions.start("01", "张三", None).unwrap();
        let b = sessions.start("01", "李四", None).unwrap();
        assert_eq!(sessions.user(&a, "01").as_deref(), Some("张三"));
        assert_eq!(sessions.user(&a, "02"), None, "another certificate");
        assert!(sessions.csrf_matches(&a, &sessions.csrf(&a)));
        assert!(!sessions.csrf_matches(&a, &sessions.csrf(&b)));
        assert!(!sessions.csrf_matches(&a, ""));
        // Signing in again ends the session before it.
        let again = sessions.start("01", "张三", Some(&a)).unwrap();
        assert_eq!(sessions.user(&a, "01"), None);
        assert_eq!(sessions.user(&again, "01").as_deref(), Some("张三"));
    }
}
