//! Writing the files `otp-setup` makes (`~/.otp.toml`, QR images): owner-only
//! (mode 0600), atomically (temporary file in the same directory, fsync, then link or
//! rename, then fsync of the directory), and never replacing an existing file unless
//! asked to.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Whether an existing file may be replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    Keep,
    Replace,
}

/// What failed, with the path involved; the message names both.
#[derive(Debug)]
pub struct WriteError {
    pub path: PathBuf,
    pub action: &'static str,
    pub source: io::Error,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.source.kind() == io::ErrorKind::AlreadyExists {
            write!(
                f,
                "{} already exists; use --force to replace it",
                self.path.display()
            )
        } else {
            write!(
                f,
                "cannot {} {}: {}",
                self.action,
                self.path.display(),
                self.source
            )
        }
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn failed<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// The directory a file is written in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A temporary file next to the target, removed on drop unless it was moved into place.
struct Temporary {
    path: PathBuf,
    keep: bool,
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn create_temporary(dir: &Path, name: &str) -> Result<(Temporary, File), WriteError> {
    let mut last_error = None;
    for attempt in 0..16u32 {
        let mut tag = [0u8; 6];
        getrandom::fill(&mut tag)
            .map_err(|e| io::Error::other(e.to_string()))
            .map_err(failed(dir, "get random bytes for a temporary file in"))?;
        let path = dir.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            base16ct::lower::encode_string(&tag)
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(file) => {
                let temporary = Temporary { path, keep: false };
                make_owner_only(&file).map_err(failed(&temporary.path, "make owner-only"))?;
                return Ok((temporary, file));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 15 => {
                last_error = Some(e)
            }
            Err(e) => return Err(failed(dir, "create a file in")(e)),
        }
    }
    Err(failed(dir, "create a file in")(last_error.unwrap_or_else(
        || io::Error::other("no free temporary name"),
    )))
}

/// Sets mode 0600 on the open file and reads it back: the mode given at creation is
/// masked by the umask (`umask 0777` would leave 0000, a file no login can read), and only
/// a file that is really the user's own and owner-only may be reported as written.
fn make_owner_only(file: &File) -> io::Result<()> {
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    let meta = file.metadata()?;
    let euid = nix::unistd::geteuid().as_raw();
    if meta.mode() & 0o7777 != 0o600 || meta.uid() != euid {
        return Err(io::Error::other(format!(
            "it has mode {:04o} and owner uid {} instead of 0600 and uid {euid}",
            meta.mode() & 0o7777,
            meta.uid()
        )));
    }
    Ok(())
}

/// Writes `contents` to `path` with mode 0600, atomically: either the whole new file
/// is there afterwards or nothing changed. With [`Existing::Keep`] an existing `path`
/// (even a dangling symbolic link) is an `AlreadyExists` error, race-free: the new
/// file is hard-linked into place, which fails rather than replaces.
pub fn write_private_file(
    path: &Path,
    contents: &[u8],
    existing: Existing,
) -> Result<(), WriteError> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| failed(path, "write")(io::Error::other("not a file name")))?
        .to_string_lossy()
        .into_owned();
    let (mut temporary, mut file) = create_temporary(dir, &name)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(failed(&temporary.path, "write"))?;
    drop(file);
    match existing {
        Existing::Keep => {
            fs::hard_link(&temporary.path, path).map_err(failed(path, "create"))?;
            // The temporary name goes; the file stays under `path`.
        }
        Existing::Replace => {
            fs::rename(&temporary.path, path).map_err(failed(path, "replace"))?;
            temporary.keep = true;
        }
    }
    drop(temporary);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed(dir, "sync the directory"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("otp-setup-unit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_an_owner_only_file_and_leaves_no_temporary() {
        let dir = scratch_dir("write");
        let path = dir.join(".otp.toml");
        write_private_file(&path, b"one", Existing::Keep).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(entries(&dir), [".otp.toml"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keeps_an_existing_file_unless_told_to_replace_it() {
        let dir = scratch_dir("keep");
        let path = dir.join("f");
        fs::write(&path, b"old").unwrap();
        let err = write_private_file(&path, b"new", Existing::Keep).unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists);
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(&dir), ["f"]);
        write_private_file(&path, b"new", Existing::Replace).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(entries(&dir), ["f"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_dangling_symlink_counts_as_existing_and_is_replaced_not_followed() {
        let dir = scratch_dir("link");
        let path = dir.join("f");
        std::os::unix::fs::symlink(dir.join("target"), &path).unwrap();
        assert!(write_private_file(&path, b"x", Existing::Keep).is_err());
        write_private_file(&path, b"x", Existing::Replace).unwrap();
        assert!(!dir.join("target").exists());
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_a_clear_error() {
        let err = write_private_file(Path::new("/nonexistent-otp-setup/f"), b"x", Existing::Keep)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot create a file in /nonexistent-otp-setup"),
            "{err}"
        );
    }

    #[test]
    fn the_io_error_is_the_source() {
        use std::error::Error;
        let e = WriteError {
            path: "/x".into(),
            action: "create",
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert_eq!(
            e.source()
                .and_then(|e| e.downcast_ref::<io::Error>())
                .map(io::Error::kind),
            Some(io::ErrorKind::PermissionDenied)
        );
    }
}
