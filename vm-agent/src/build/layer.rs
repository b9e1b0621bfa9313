//! Layers the builder makes: a step's overlay upper directory becomes an image layer. Its diff
//! ID is the digest of the OCI tar of the directory (overlay whiteouts written as `.wh.` files),
//! which is kept as the layer's archive, and the directory itself, already in the snapshot form
//! the image store keeps, moves into the store. Also the context helpers: `.dockerignore` patterns and a content digest of COPY sources.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::images::store::{ImageStore, LayerArchive, TAR_LAYER, keep_archive};
pub use berth_agent_proto::dockerignore::{glob, ignored, rules as ignore_rules};

/// Passes writes on to `inner` while hashing them.
struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn is_opaque(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut value = [0u8; 4];
    // SAFETY: both strings are NUL-terminated and `value` is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

fn empty_file(name: &Path) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o600);
    h.set_mtime(0);
    let _ = h.set_path(name);
    h.set_cksum();
    h
}

fn append_tree<W: Write>(b: &mut tar::Builder<W>, root: &Path, rel: &Path) -> std::io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let path = root.join(&rel);
        let md = std::fs::symlink_metadata(&path)?;
        if md.file_type().is_char_device() && md.rdev() == 0 {
            let wh = rel.with_file_name(format!(".wh.{}", name.to_string_lossy()));
            b.append(&empty_file(&wh), std::io::empty())?;
            continue;
        }
        b.append_path_with_name(&path, &rel)?;
        if md.is_dir() {
            if is_opaque(&path) {
                b.append(&empty_file(&rel.join(".wh..wh..opq")), std::io::empty())?;
            }
            append_tree(b, root, &rel)?;
        }
    }
    Ok(())
}

fn set_opaque(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: both strings are NUL-terminated and the value is one readable byte.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Copies a live container's upper directory to `dst` (which must not exist) in the same
/// overlay form: owners, modes, links, whiteout devices and opaque-directory marks.
pub fn copy_upper(src: &Path, dst: &Path) -> std::io::Result<()> {
    fn marks(src: &Path, dst: &Path) -> std::io::Result<()> {
        if is_opaque(src) {
            set_opaque(dst)?;
        }
        for e in std::fs::read_dir(src)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                marks(&e.path(), &dst.join(e.file_name()))?;
            }
        }
        Ok(())
    }
    std::fs::create_dir(dst)?;
    let root = crate::copy::Root::open(dst)?;
    crate::copy::copy_entry(src, &root, "", None)?;
    marks(src, dst)
}

/// Writes the OCI tar of the layer `upper` holds to `out`; returns `out` and the diff ID.
fn write_layer<W: Write>(upper: &Path, out: W) -> std::io::Result<(W, String)> {
    let mut b = tar::Builder::new(HashWriter {
        inner: out,
        hasher: Sha256::new(),
    });
    b.follow_symlinks(false);
    append_tree(&mut b, upper, Path::new(""))?;
    let w = b.into_inner()?;
    Ok((w.inner, format!("sha256:{:x}", w.hasher.finalize())))
}

/// The diff ID of the layer `upper` holds.
#[cfg(test)]
fn diff_id(upper: &Path) -> std::io::Result<String> {
    Ok(write_layer(upper, std::io::sink())?.1)
}

/// Turns `upper` into a stored layer, its tar kept as the layer's archive; `None` when the
/// step changed nothing.
pub fn commit(store: &ImageStore, upper: &Path) -> std::io::Result<Option<String>> {
    if std::fs::read_dir(upper)?.next().is_none() {
        return Ok(None);
    }
    let tar_path = store
        .tmp_dir()
        .join(format!("layer-{}.tar", crate::containers::random_hex(8)));
    let result = (|| {
        let file = std::io::BufWriter::new(std::fs::File::create(&tar_path)?);
        let (file, diff) = write_layer(upper, file)?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let archive = LayerArchive {
            media_type: TAR_LAYER.to_owned(),
            digest: diff.clone(),
            size: file.metadata()?.len(),
        };
        let snap = store.snapshot_dir(&diff);
        if store.has_snapshot(&diff) {
            std::fs::remove_dir_all(upper)?;
            if store.layer_archive(&diff).is_none() {
                keep_archive(&snap, &tar_path, &archive)?;
            }
        } else {
            std::fs::create_dir_all(&snap)?;
            keep_archive(&snap, &tar_path, &archive)?;
            crate::images::store::place_durably(upper, &snap.join("fs"))?;
        }
        Ok(Some(diff))
    })();
    let _ = std::fs::remove_file(&tar_path);
    result
}

/// A digest of the names, modes, owners, link targets and contents under `paths`, for the
/// cache key of a COPY or ADD.
pub fn content_digest(paths: &[PathBuf]) -> std::io::Result<String> {
    fn walk(h: &mut Sha256, path: &Path, rel: &str) -> std::io::Result<()> {
        let md = std::fs::symlink_metadata(path)?;
        h.update(format!("{rel}\0{:o}\0{}\0", md.mode(), md.len()).as_bytes());
        if md.file_type().is_symlink() {
            h.update(std::fs::read_link(path)?.to_string_lossy().as_bytes());
        } else if md.is_file() {
            std::io::copy(&mut std::fs::File::open(path)?, &mut HashWriter2(h))?;
        } else if md.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(path)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            names.sort();
            for n in names {
                walk(h, &path.join(&n), &format!("{rel}/{}", n.to_string_lossy()))?;
            }
        }
        Ok(())
    }
    struct HashWriter2<'a>(&'a mut Sha256);
    impl Write for HashWriter2<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Sha256::new();
    for p in paths {
        walk(
            &mut h,
            p,
            &p.file_name().unwrap_or_default().to_string_lossy(),
        )?;
    }
    Ok(format!("{:x}", h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_dirs_become_layers_with_stable_diff_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/app.conf"), b"x=1").unwrap();
        let a = diff_id(&upper).unwrap();
        assert_eq!(a, diff_id(&upper).unwrap());
        let diff = commit(&store, &upper).unwrap().unwrap();
        assert_eq!(diff, a);
        assert!(store.has_snapshot(&diff));
        assert!(!upper.exists());
        let (archive, path) = store.layer_archive(&diff).expect("the layer's tar is kept");
        let tar = std::fs::read(path).unwrap();
        assert_eq!(archive.digest, format!("sha256:{:x}", Sha256::digest(&tar)));
        assert_eq!(
            (archive.size, archive.media_type.as_str()),
            (tar.len() as u64, TAR_LAYER)
        );
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(commit(&store, &empty).unwrap(), None);

        let ctx = dir.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        std::fs::write(ctx.join("f"), b"1").unwrap();
        let before = content_digest(&[ctx.join("f")]).unwrap();
        std::fs::write(ctx.join("f"), b"2").unwrap();
        assert_ne!(before, content_digest(&[ctx.join("f")]).unwrap());
    }
}
