//! Every fsync the store does goes through [`Durability`], so tests can inject failures
//! and check that an fsync error is fatal and nothing unsynced is acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

pub trait Durability: Send + Sync {
    fn sync_file(&self, file: &File) -> io::Result<()>;
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real thing: `fdatasync` on files, `fsync` on directories.
#[derive(Debug, Default)]
pub struct OsDurability;

impl Durability for OsDurability {
    fn sync_file(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// Writes `bytes` to `path` so that readers see either the old file or the whole new one:
/// write a temp file, fsync it, rename over, fsync the directory.
pub fn write_atomically(d: &dyn Durability, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        d.sync_file(&f)?;
    }
    std::fs::rename(&tmp, path)?;
    d.sync_dir(dir)
}
