//! The bearer tokens every provider client shares, one slot per credential (WattTime logs in with
//! a username and password and hands out a token to reuse until it is refused).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Cached bearer tokens, one slot per credential. A slot's async mutex is held during a login so
/// that concurrent fetches with the same credential log in once.
#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<(String, String), TokenSlot>>,
}

/// The token of one credential; `None` until the first login or after a refused token.
pub(crate) type TokenSlot = Arc<tokio::sync::Mutex<Option<String>>>;

impl TokenCache {
    pub(crate) fn slot(&self, base: &str, username: &str) -> TokenSlot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots
            .entry((base.to_string(), username.to_string()))
            .or_default()
            .clone()
    }

    /// Credentials with a slot (for `Debug`).
    pub(crate) fn len(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
