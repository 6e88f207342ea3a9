//! The one rule for paths trusted as root (the state directory, the policy file, secrets
//! in the administrator-owned store): every directory from `/` down to the target is a
//! real directory (no symbolic link), owned by root and writable by no one else. Anyone
//! who could write to one of them could rename the target away and put another in its
//! place, so checking only the last component would prove nothing.

use std::fmt;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// What is wrong with one component of a path.
#[derive(Debug)]
pub enum Problem {
    NotAbsolute,
    /// A `..` component: what it names depends on links the check cannot vouch for.
    ParentComponent,
    SymbolicLink,
    NotDirectory,
    NotRegularFile,
    NotRootOwned {
        uid: u32,
    },
    /// Group- or world-writable; a sticky bit does not help, others may still add entries.
    WritableByOthers {
        mode: u32,
    },
    Inspect(io::Error),
}

/// Why a path is not safe to trust as root. `component` is the path up to the component
/// at fault (the target itself or a directory on the way to it).
#[derive(Debug)]
pub struct UnsafePath {
    pub target: PathBuf,
    pub component: PathBuf,
    pub problem: Problem,
}

impl UnsafePath {
    /// The target (or a directory on the way) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(&self.problem, Problem::Inspect(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// Names the component at fault and what an administrator can do about it; the caller
/// names the target (a directory on the way is named here).
impl fmt::Display for UnsafePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.component.display();
        if self.component != self.target {
            write!(f, "directory {at} on the way to it: ")?;
        }
        match &self.problem {
            Problem::NotAbsolute => write!(f, "not an absolute path"),
            Problem::ParentComponent => write!(f, "contains \"..\"; name the path without it"),
            Problem::SymbolicLink => write!(
                f,
                "is a symbolic link; name the real path instead (no link may be on the way)"
            ),
            Problem::NotDirectory => write!(f, "not a directory"),
            Problem::NotRegularFile => write!(f, "not a regular file"),
            Problem::NotRootOwned { uid } => write!(
                f,
                "owned by uid {uid}, not root: that account could rename or replace what is \
                 in it (chown root {at}, or use a root-owned location)"
            ),
            Problem::WritableByOthers { mode } => write!(
                f,
                "writable by group or others (mode {mode:04o}): they could rename or replace \
                 what is in it (chmod go-w {at})"
            ),
            Problem::Inspect(e) => write!(f, "cannot inspect {at}: {e}"),
        }
    }
}

impl std::error::Error for UnsafePath {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            Problem::Inspect(e) => Some(e),
            _ => None,
        }
    }
}

/// The ownership and mode rule shared by directories and files.
fn judge_owner_and_mode(uid: u32, mode: u32) -> Result<(), Problem> {
    if uid != 0 {
        return Err(Problem::NotRootOwned { uid });
    }
    if mode & 0o022 != 0 {
        return Err(Problem::WritableByOthers {
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

/// A directory on the way (or the target directory), from its `lstat`.
fn judge_directory(meta: &Metadata) -> Result<(), Problem> {
    if meta.file_type().is_symlink() {
        return Err(Problem::SymbolicLink);
    }
    if !meta.is_dir() {
        return Err(Problem::NotDirectory);
    }
    judge_owner_and_mode(meta.uid(), meta.mode())
}

/// The directories from `/` down to `path` (included), refusing relative paths and `..`.
fn directories_down_to(path: &Path) -> Result<Vec<PathBuf>, UnsafePath> {
    let refuse = |problem| UnsafePath {
        target: path.into(),
        component: path.into(),
        problem,
    };
    if !path.is_absolute() {
        return Err(refuse(Problem::NotAbsolute));
    }
    let mut walked = PathBuf::new();
    let mut all = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::Normal(_) => walked.push(component),
            Component::ParentDir => return Err(refuse(Problem::ParentComponent)),
            Component::CurDir | Component::Prefix(_) => continue,
        }
        all.push(walked.clone());
    }
    Ok(all)
}

fn check_directories(target: &Path, directories: &[PathBuf]) -> Result<(), UnsafePath> {
    for directory in directories {
        let fault = |problem| UnsafePath {
            target: target.into(),
            component: directory.clone(),
            problem,
        };
        let meta = fs::symlink_metadata(directory).map_err(|e| fault(Problem::Inspect(e)))?;
        judge_directory(&meta).map_err(fault)?;
    }
    Ok(())
}

/// Checks that `dir` and every directory above it is a root-owned directory, not a
/// symbolic link and writable by no one but root.
pub fn check_root_owned_dir(dir: &Path) -> Result<(), UnsafePath> {
    check_directories(dir, &directories_down_to(dir)?)
}

/// Checks every directory above `path` (not `path` itself), as [`check_root_owned_dir`].
pub fn check_root_owned_parents(path: &Path) -> Result<(), UnsafePath> {
    let mut directories = directories_down_to(path)?;
    directories.pop();
    check_directories(path, &directories)
}

/// Checks an opened file's own metadata: a regular file, owned by root, writable by no one
/// else. For files inside a directory already checked with [`check_root_owned_dir`].
pub fn check_root_owned_file_metadata(path: &Path, meta: &Metadata) -> Result<(), UnsafePath> {
    let fault = |problem| UnsafePath {
        target: path.into(),
        component: path.into(),
        problem,
    };
    if !meta.is_file() {
        return Err(fault(Problem::NotRegularFile));
    }
    judge_owner_and_mode(meta.uid(), meta.mode()).map_err(fault)
}

/// Opens `path` for reading if it is a regular root-owned file writable by no one else,
/// every directory above it passes [`check_root_owned_parents`], and it is not itself a
/// symbolic link. A FIFO or device never blocks the caller (opened non-blocking, then
/// refused as not a regular file). Further rules (readable by whom, size) are the caller's.
pub fn open_root_owned_file(path: &Path) -> Result<File, UnsafePath> {
    check_root_owned_parents(path)?;
    let fault = |problem| UnsafePath {
        target: path.into(),
        component: path.into(),
        problem,
    };
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => fault(Problem::SymbolicLink),
            _ => fault(Problem::Inspect(e)),
        })?;
    let meta = file.metadata().map_err(|e| fault(Problem::Inspect(e)))?;
    check_root_owned_file_metadata(path, &meta)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{chown, symlink, PermissionsExt};

    /// Root-owned scratch space (0700) under /run, so that every directory above is root's.
    fn scratch(name: &str) -> PathBuf {
        assert!(
            nix::unistd::geteuid().is_root(),
            "run the test suite as root"
        );
        let dir = PathBuf::from(format!(
            "/run/pam-otp-safe-path-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    #[cfg_attr(
        not(feature = "system-tests"),
        ignore = "needs root: make test runs it"
    )]
    fn root_owned_directories_and_files_pass() {
        let top = scratch("good");
        let dir = top.join("state");
        fs::create_dir(&dir).unwrap();
        check_root_owned_dir(&dir).unwrap();
        let file = dir.join("policy.toml");
        fs::write(&file, "x").unwrap();
        set_mode(&file, 0o644);
        open_root_owned_file(&file).unwrap();
        fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    #[cfg_attr(
        not(feature = "system-tests"),
        ignore = "needs root: make test runs it"
    )]
    fn a_parent_owned_by_someone_else_is_named() {
        let top = scratch("foreign");
        let parent = top.join("p");
        let dir = parent.join("state");
        fs::create_dir_all(&dir).unwrap();
        chown(&parent, Some(4242), None).unwrap();
        let err = check_root_owned_dir(&dir).unwrap_err();
        assert_eq!(err.component, parent);
        assert!(matches!(err.problem, Problem::NotRootOwned { uid: 4242 }));
        let text = err.to_string();
        assert!(text.contains("owned by uid 4242, not root"), "{text}");
        assert!(
            text.contains(&format!("directory {}", parent.display())),
            "{text}"
        );
        let file = parent.join("f");
        fs::write(&file, "x").unwrap();
        assert!(matches!(
            open_root_owned_file(&file).unwrap_err().problem,
            Problem::NotRootOwned { .. }
        ));
        fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    #[cfg_attr(
        not(feature = "system-tests"),
        ignore = "needs root: make test runs it"
    )]
    fn writable_parents_are_refused_even_when_sticky() {
        let top = scratch("writable");
        let parent = top.join("p");
        let dir = parent.join("state");
        fs::create_dir_all(&dir).unwrap();
        for mode in [0o775, 0o757, 0o1777, 0o1770] {
            set_mode(&parent, mode);
            let err = check_root_owned_dir(&dir).unwrap_err();
            assert!(
                matches!(err.problem, Problem::WritableByOthers { mode: m } if m == mode),
                "{mode:o}: {err}"
            );
            assert!(err.to_string().contains("chmod go-w"), "{err}");
        }
        fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    #[cfg_attr(
        not(feature = "system-tests"),
        ignore = "needs root: make test runs it"
    )]
    fn links_relative_paths_and_dot_dot_are_refused() {
        let top = scratch("links");
        let real = top.join("real");
        fs::create_dir_all(real.join("state")).unwrap();
        let link = top.join("link");
        symlink(&real, &link).unwrap();
        let err = check_root_owned_dir(&link.join("state")).unwrap_err();
        assert_eq!(err.component, link);
        assert!(matches!(err.problem, Problem::SymbolicLink));
        fs::write(real.join("f"), "x").unwrap();
        symlink(real.join("f"), top.join("flink")).unwrap();
        assert!(matches!(
            open_root_owned_file(&top.join("flink"))
                .unwrap_err()
                .problem,
            Problem::SymbolicLink
        ));
        assert!(matches!(
            check_root_owned_dir(Path::new("run/x"))
                .unwrap_err()
                .problem,
            Problem::NotAbsolute
        ));
        assert!(matches!(
            check_root_owned_dir(&real.join("..").join("real"))
                .unwrap_err()
                .problem,
            Problem::ParentComponent
        ));
        fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    #[cfg_attr(
        not(feature = "system-tests"),
        ignore = "needs root: make test runs it"
    )]
    fn special_and_missing_files_are_told_apart() {
        let top = scratch("special");
        assert!(matches!(
            open_root_owned_file(Path::new("/dev/zero"))
                .unwrap_err()
                .problem,
            Problem::NotRegularFile
        ));
        let missing = open_root_owned_file(&top.join("nope")).unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        let missing_parent = open_root_owned_file(&top.join("no/such")).unwrap_err();
        assert!(missing_parent.is_not_found(), "{missing_parent}");
        let file = top.join("f");
        fs::write(&file, "x").unwrap();
        assert!(matches!(
            check_root_owned_dir(&file).unwrap_err().problem,
            Problem::NotDirectory
        ));
        fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    fn an_inspection_failure_is_the_source() {
        use std::error::Error;
        let unsafe_path = |problem| UnsafePath {
            target: "/run/x".into(),
            component: "/run".into(),
            problem,
        };
        let failed = unsafe_path(Problem::Inspect(io::Error::from(io::ErrorKind::NotFound)));
        assert_eq!(
            failed
                .source()
                .and_then(|e| e.downcast_ref::<io::Error>())
                .map(io::Error::kind),
            Some(io::ErrorKind::NotFound)
        );
        assert!(unsafe_path(Problem::SymbolicLink).source().is_none());
    }
}
