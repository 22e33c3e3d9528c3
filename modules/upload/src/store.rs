//! Where uploaded files live: the [`FileStore`] trait, and [`DiskStore`], one file per
//! slot under a directory. The HTTP side only streams: a file is never held in memory.

use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use starling_api::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// A stream of body chunks.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// Why a file was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// More bytes came than the slot allows.
    #[error("more than {0} bytes sent")]
    TooLarge(u64),
    /// The body ended before the slot's size.
    #[error("body ended after {got} of {expected} bytes")]
    Truncated {
        /// Bytes received.
        got: u64,
        /// The slot's size.
        expected: u64,
    },
    /// Reading the request or writing the file failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// Storage for uploaded files, by slot id (an S3-compatible backend can implement it).
pub trait FileStore: Send + Sync + 'static {
    /// Stores `body` as file `id` when exactly `size` bytes come; otherwise keeps nothing.
    /// `progress` is told about every chunk written.
    fn store<'a>(
        &'a self,
        id: &'a str,
        size: u64,
        body: ByteStream,
        progress: &'a (dyn Fn(u64) + Send + Sync),
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Streams bytes `offset..offset + len` of file `id`.
    fn read<'a>(&'a self, id: &'a str, offset: u64, len: u64) -> BoxFuture<'a, io::Result<ByteStream>>;

    /// Deletes file `id`; a file that is not there is not an error.
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, io::Result<()>>;
}

/// Files on disk: `<dir>/<id>`, written as `<dir>/<id>.part` and renamed when complete.
pub struct DiskStore {
    dir: PathBuf,
}

/// Bytes read from disk per chunk when serving a file.
const READ_CHUNK: usize = 64 * 1024;

impl DiskStore {
    /// A store in `dir`, created if missing.
    pub fn new(dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(DiskStore { dir })
    }

    fn path(&self, id: &str) -> PathBuf {
        // Ids are generated hex strings (checked by the caller); no path can escape.
        self.dir.join(id)
    }

    async fn write(
        &self,
        id: &str,
        size: u64,
        mut body: ByteStream,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), StoreError> {
        let part = self.dir.join(format!("{id}.part"));
        let mut file = tokio::fs::File::create(&part).await?;
        let mut written = 0u64;
        let result = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                written += chunk.len() as u64;
                if written > size {
                    return Err(StoreError::TooLarge(size));
                }
                file.write_all(&chunk).await?;
                progress(chunk.len() as u64);
            }
            if written != size {
                return Err(StoreError::Truncated { got: written, expected: size });
            }
            file.flush().await?;
            file.sync_data().await?;
            Ok(())
        }
        .await;
        drop(file);
        match result {
            Ok(()) => Ok(tokio::fs::rename(&part, self.path(id)).await?),
            Err(err) => {
                let _ = tokio::fs::remove_file(&part).await;
                Err(err)
            }
        }
    }
}

impl FileStore for DiskStore {
    fn store<'a>(
        &'a self,
        id: &'a str,
        size: u64,
        body: ByteStream,
        progress: &'a (dyn Fn(u64) + Send + Sync),
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.write(id, size, body, progress))
    }

    fn read<'a>(&'a self, id: &'a str, offset: u64, len: u64) -> BoxFuture<'a, io::Result<ByteStream>> {
        Box::pin(async move {
            let mut file = tokio::fs::File::open(self.path(id)).await?;
            file.seek(io::SeekFrom::Start(offset)).await?;
            let reader = file.take(len);
            Ok(tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK).boxed())
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path(id)).await {
                Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
                _ => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> ByteStream {
        futures::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>()).boxed()
    }

    async fn collect(mut stream: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.expect("chunk"));
        }
        out
    }

    #[tokio::test]
    async fn stores_exact_sizes_only_and_reads_ranges() {
        let dir = std::env::temp_dir().join(format!("starling-upload-store-{}", rand::random::<u64>()));
        let store = DiskStore::new(dir.clone()).expect("dir");
        let none = |_| {};
        store.store("a1", 6, chunks(&[b"abc", b"def"]), &none).await.expect("stored");
        assert_eq!(collect(store.read("a1", 2, 3).await.expect("read")).await, b"cde");
        assert!(matches!(store.store("b2", 4, chunks(&[b"abc", b"def"]), &none).await, Err(StoreError::TooLarge(4))));
        assert!(matches!(store.store("c3", 9, chunks(&[b"abc"]), &none).await, Err(StoreError::Truncated { .. })));
        assert!(!dir.join("b2").exists() && !dir.join("b2.part").exists() && !dir.join("c3.part").exists());
        store.delete("a1").await.expect("deleted");
        store.delete("a1").await.expect("deleting again is fine");
        let _ = std::fs::remove_dir_all(dir);
    }
}
