//! Writes to a pipe or socket whose other end is gone, made harmless to the program that
//! loaded the module: most PAM programs (sudo, su, screen lockers, pamtester) leave SIGPIPE
//! at its default, which ends the whole program, where a login should only fail.

/// SIGPIPE blocked in this thread while held; one raised meanwhile is taken off again
/// before the old mask comes back, so the write only returns `EPIPE`.
pub struct BlockedSigpipe {
    old_mask: libc::sigset_t,
    was_pending: bool,
}

/// The signal set holding only SIGPIPE.
fn sigpipe_only() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed local set, sigaddset adds a valid signal.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        set
    }
}

impl BlockedSigpipe {
    pub fn block() -> BlockedSigpipe {
        let pipe_only = sigpipe_only();
        // SAFETY: sigpending and pthread_sigmask write only into local sets; the mask
        // change is this thread's alone, and `drop` restores it.
        unsafe {
            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut pending);
            let was_pending = libc::sigismember(&pending, libc::SIGPIPE) == 1;
            let mut old_mask: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &pipe_only, &mut old_mask);
            BlockedSigpipe {
                old_mask,
                was_pending,
            }
        }
    }
}

impl Drop for BlockedSigpipe {
    fn drop(&mut self) {
        let pipe_only = sigpipe_only();
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: sigtimedwait with a zero timeout takes a pending SIGPIPE without waiting
        // (only when none was pending before, so never one that was not ours);
        // pthread_sigmask restores the mask saved by `block`.
        unsafe {
            if !self.was_pending {
                loop {
                    let taken = libc::sigtimedwait(&pipe_only, std::ptr::null_mut(), &zero);
                    let interrupted = taken == -1
                        && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR);
                    if taken != libc::SIGPIPE && !interrupted {
                        break;
                    }
                }
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old_mask, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    /// Whether SIGPIPE is pending for this thread or process.
    fn sigpipe_pending() -> bool {
        // SAFETY: sigpending writes into the zeroed local set.
        unsafe {
            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut pending);
            libc::sigismember(&pending, libc::SIGPIPE) == 1
        }
    }

    #[test]
    fn a_write_to_a_closed_peer_fails_and_leaves_no_sigpipe_behind() {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        // Blocked around the guard too (the test harness ignores SIGPIPE, which would hide
        // one left behind): a SIGPIPE the guard did not take off stays pending here.
        let outer = BlockedSigpipe::block();
        {
            let _blocked = BlockedSigpipe::block();
            // write_vectored is writev, which raises SIGPIPE (write on a UnixStream passes
            // MSG_NOSIGNAL and would not).
            let error = ours
                .write_vectored(&[std::io::IoSlice::new(b"x")])
                .unwrap_err();
            assert_eq!(error.raw_os_error(), Some(libc::EPIPE));
            assert!(sigpipe_pending(), "the write raised no SIGPIPE to take off");
        }
        let left = sigpipe_pending();
        drop(outer);
        assert!(!left, "a SIGPIPE was left pending");
    }
}
