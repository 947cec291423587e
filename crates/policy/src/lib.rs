//! The owner's policy: the vocabulary a department uses in its manifest
//! (sharing classes, sensitivities, field types, masks, semantic key types)
//! and the masks themselves, applied at the owning node so raw sensitive
//! values never cross the network unless a grant unmasks them.

pub mod mask;
mod vocabulary;

pub use mask::{HashKey, MaskedValue};
pub use vocabulary::{is_key_type, FieldType, Mask, Sensitivity, Sharing, KEY_TYPES};
