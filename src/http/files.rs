//! Attachment files on disk, kept once per content: `DIR/ab/abcdef…`,
//! named by the SHA-256 of their bytes.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::io::AsyncWriteExt;

#[derive(Clone)]
pub struct FileStore {
    dir: PathBuf,
}

pub fn hex(sha256: &[u8; 32]) -> String {
    sha256.iter().map(|b| format!("{b:02x}")).collect()
}

impl FileStore {
    pub fn new(dir: &Path) -> FileStore {
        FileStore {
            dir: dir.to_owned(),
        }
    }

    /// The path of the file with this hex SHA-256; `None` for anything
    /// that is not one (no path can come from outside).
    pub fn path(&self, sha_hex: &str) -> Option<PathBuf> {
        if sha_hex.len() != 64 || !sha_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(self.dir.join(sha_hex.get(..2)?).join(sha_hex))
    }

    /// Stores `data` unless a file with its hash is there; durable before
    /// it returns (written aside, synced, renamed).
    pub async fn put(&self, sha256: &[u8; 32], data: &[u8]) -> anyhow::Result<String> {
        let sha_hex = hex(sha256);
        let path = self.path(&sha_hex).context("Hash")?;
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(sha_hex);
        }
        let folder = path.parent().context("Attachment folder")?;
        tokio::fs::create_dir_all(folder)
            .await
            .with_context(|| format!("Creating {}", folder.display()))?;
        let aside = folder.join(format!(".{sha_hex}.{}", std::process::id()));
        let mut file = tokio::fs::File::create(&aside)
            .await
            .with_context(|| format!("Creating {}", aside.display()))?;
        file.write_all(data)
            .await
            .context("Writing an attachment")?;
        file.sync_all().await.context("Syncing an attachment")?;
        drop(file);
        tokio::fs::rename(&aside, &path)
            .await
            .with_context(|| format!("Renaming {}", aside.display()))?;
        Ok(sha_hex)
    }

    pub async fn remove(&self, sha_hex: &str) {
        if let Some(path) = self.path(sha_hex) {
            let _ = tokio::fs::remove_file(path).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_are_kept_once_by_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(dir.path());
        let sha = [7u8; 32];
        let name = store.put(&sha, b"bytes").await.expect("put");
        assert_eq!(name, "07".repeat(32));
        store.put(&sha, b"bytes").await.expect("again");
        let path = store.path(&name).expect("path");
        assert_eq!(std::fs::read(&path).expect("read"), b"bytes");
        assert!(store.path("../../etc/passwd").is_none());
        assert!(store.path(&"zz".repeat(32)).is_none());
        store.remove(&name).await;
        assert!(!path.exists());
    }
}
