//! The size of the terminal the QR code is drawn on: one ioctl on standard output.

/// Rows of the terminal on standard output; `None` when it is not a terminal (a pipe, a
/// file) or does not say.
pub fn terminal_rows() -> Option<u16> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points at a
    // live, properly aligned `winsize` owned by this frame; fd 1 is only read.
    let result = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (result == 0 && size.ws_row > 0).then_some(size.ws_row)
}
