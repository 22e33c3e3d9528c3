//! The stream socket wrapper, shared with S2S: see [`crate::stream`].

pub use crate::stream::*;
