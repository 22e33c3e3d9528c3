//! HTTP upload (XEP-0363) URLs and request headers: a file name and a `Range` header
//! from the input. Invariants: no panic; the file's URL has exactly its four segments,
//! its name decodes back to the file name and its MAC verifies for that name only; the
//! Content-Disposition is a valid header; a served range lies inside the file; only
//! lower-case 32-digit hex passes as a slot id (safe as a file name).
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_mod_upload::fuzzing::{Signer, byte_range, disposition, file_path, valid_id};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (filename, range) = text.split_once('\n').unwrap_or((text, ""));
    let signer = Signer::new(&[7; 32]);
    let id = "0123456789abcdef0123456789abcdef";
    let path = file_path(&signer, id, filename);
    let segments: Vec<&str> = path.split('/').collect();
    assert_eq!(segments.len(), 5, "{path}");
    let decoded = percent_encoding::percent_decode_str(segments[4]).decode_utf8().expect("UTF-8");
    assert_eq!(decoded, filename);
    assert!(Signer::matches(&signer.file_mac(id, &decoded), segments[3]));
    assert!(!Signer::matches(&signer.file_mac(id, &format!("{filename}x")), segments[3]));
    for content_type in ["image/png", "text/html", filename] {
        assert!(axum_header_value(&disposition(content_type, filename)), "Content-Disposition for {filename:?}");
    }
    if valid_id(filename) {
        assert!(filename.len() == 32 && filename.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    }
    let size = u64::from(data.len() as u32 % 5000);
    let mut headers = starling_mod_upload::fuzzing::HeaderMap::new();
    if let Ok(value) = range.parse() {
        headers.insert("range", value);
    }
    if let Ok(Some((start, end))) = byte_range(&headers, size) {
        assert!(start <= end && end < size, "range {start}-{end} of {size}");
    }
});

fn axum_header_value(value: &str) -> bool {
    starling_mod_upload::fuzzing::HeaderValue::from_str(value).is_ok()
}
