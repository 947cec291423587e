//! The owner's policy: the vocabulary a department uses in its manifest
//! (sharing classes, sensitivities, field types, masks, semantic key types)
//! and the masks themselves, applied at the owning node so raw sensitive
//! values never cross the network unless a grant unmasks them; and the
//! [`ticket`] the coordinator signs to authorize one query, which the
//! owning node verifies before applying its own policy on top.

pub mod arrow;
pub mod ids;
pub mod mask;
pub mod text;
pub mod ticket;
mod vocabulary;

pub use mask::{HashKey, MaskedValue};
pub use vocabulary::{is_key_type, FieldType, Mask, Sensitivity, Sharing, KEY_TYPES};
