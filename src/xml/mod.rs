//! The XML stream layer (RFC 6120 §4, §11): an incremental, sans-IO reader that turns
//! bytes into stream events, and the few writers for stream-level output.

mod reader;
mod writer;

pub use reader::{Limits, StreamEvent, StreamHeader, StreamReader, XmlError};
pub use writer::{HeaderOut, escape_text, write_stream_error, write_stream_header};

/// `http://etherx.jabber.org/streams`, the namespace of the stream root element.
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
