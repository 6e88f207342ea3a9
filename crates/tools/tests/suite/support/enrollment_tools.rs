//! Helpers for the `otp-setup` tests: running the built binary as a test user, reading
//! what it printed, turning terminal drawings into images and decoding them with
//! `zbarimg`. Nothing here calls the crate's code: the tests see otp-setup only from
//! outside, as a user and a phone would.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::support::{runnable_copy, unique, TestUser, UserOptions};

/// Seconds after which a hung otp-setup (or helper tool) is killed.
const TIMEOUT_SECS: &str = "60";

/// Creates a throw-away user named `ts…` (this helper's prefix), home included;
/// the returned `TestUser` deletes it again on drop.
pub fn ts_user() -> TestUser {
    TestUser::create(&unique("ts"), UserOptions::default())
}

/// A copy of the built otp-setup that every user can run (the build tree may sit
/// under a home directory they cannot enter), shared by the tests running at the same
/// time and removed when the last of them is done.
struct SharedBinary {
    dir: PathBuf,
}

impl SharedBinary {
    fn get() -> Arc<SharedBinary> {
        static CURRENT: Mutex<Weak<SharedBinary>> = Mutex::new(Weak::new());
        let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(binary) = current.upgrade() {
            return binary;
        }
        let path = runnable_copy(&built_binary(), "ts-otp-setup-bin-");
        // A process forked by another test thread while the copy was open for writing
        // holds that descriptor until it execs, and meanwhile running the copy fails
        // with ETXTBSY. Once one run succeeds no writer is left, and none can come back.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Command::new(&path).arg("--version").output() {
                Ok(out) if out.status.success() => break,
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                    sleep(Duration::from_millis(20))
                }
                other => panic!("cannot run {}: {other:?}", path.display()),
            }
        }
        let dir = path.parent().unwrap().to_path_buf();
        let binary = Arc::new(SharedBinary { dir });
        *current = Arc::downgrade(&binary);
        binary
    }
}

impl Drop for SharedBinary {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A directory of this test's own (mode 0755) for the images it makes, and the
/// runnable copy of otp-setup; removed on drop.
pub struct Workspace {
    pub dir: PathBuf,
    binary: Arc<SharedBinary>,
}

impl Workspace {
    pub fn new() -> Workspace {
        let binary = SharedBinary::get();
        let dir = std::env::temp_dir().join(unique("ts-otp-setup-"));
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        Workspace { dir, binary }
    }

    pub fn binary(&self) -> PathBuf {
        self.binary.dir.join("otp-setup")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `<target>/debug/otp-setup`, next to `<target>/debug/deps/<this test>`.
fn built_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable is in <target>/<profile>/deps/")
        .join("otp-setup");
    assert!(
        path.is_file(),
        "{} not found: run `cargo build --all-targets` first",
        path.display()
    );
    path
}

/// The environment otp-setup gets: nothing but a path, the user's home and a locale
/// (`LANG=lang`; an empty `lang` leaves LANG unset, as after `su - user` on a default
/// Debian, whose /etc/default/locale is empty). No LC_* variable is ever set.
pub fn user_env<'a>(user: &'a TestUser, lang: &'a str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("PATH", "/usr/bin:/bin".to_string()),
        ("HOME", user.home.display().to_string()),
        ("USER", user.name.clone()),
    ];
    if !lang.is_empty() {
        env.push(("LANG", lang.to_string()));
    }
    env
}

/// `timeout 60 setpriv --reuid … --regid … --init-groups -- PROGRAM ARGS`.
pub fn as_user_argv(user: &TestUser, program: &str, args: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "setpriv".into(),
        format!("--reuid={}", user.uid),
        format!("--regid={}", user.gid),
        "--init-groups".into(),
        "--".into(),
        program.into(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv
}

/// Runs `program args` as `user` (no stdin), in the user's home, with `LANG=lang`.
pub fn run_as(user: &TestUser, lang: &str, program: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg(TIMEOUT_SECS)
        .args(as_user_argv(user, program, args))
        .env_clear()
        .envs(user_env(user, lang))
        .current_dir(&user.home)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Names in a directory, sorted: to show that nothing was added or left behind.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---- what otp-setup printed ----

/// The parts of otp-setup's output a user relies on.
#[derive(Debug)]
pub struct Printed {
    /// The `otpauth://` URI after `Key URI: `.
    pub uri: String,
    /// The `Secret:` line without its grouping spaces, as a user would type it.
    pub secret: String,
    /// The recovery codes listed at the end.
    pub recovery_codes: Vec<String>,
    /// Lines of the terminal drawing, exactly as printed (escape sequences included).
    pub drawing: Vec<String>,
}

/// Reads otp-setup's standard output (pty `\r\n` line ends allowed).
pub fn parse_printed(stdout: &str) -> Printed {
    let lines: Vec<&str> = stdout.lines().map(|l| l.trim_end_matches('\r')).collect();
    let uri = lines
        .iter()
        .find_map(|l| l.strip_prefix("Key URI: "))
        .unwrap_or_else(|| panic!("no `Key URI:` line in\n{stdout}"))
        .to_string();
    let secret: String = lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix("Secret:"))
        .unwrap_or_else(|| panic!("no `Secret:` line in\n{stdout}"))
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let drawing = lines
        .iter()
        .filter(|l| l.starts_with('\x1b'))
        .map(|l| l.to_string())
        .collect();
    let recovery_codes = match lines.iter().position(|l| l.starts_with("Recovery codes:")) {
        Some(start) => lines[start + 1..]
            .iter()
            .filter_map(|l| l.strip_prefix("  "))
            .map(str::to_string)
            .collect(),
        None => Vec::new(),
    };
    Printed {
        uri,
        secret,
        recovery_codes,
        drawing,
    }
}

/// The value of `name=` in the URI's query.
pub fn uri_parameter(uri: &str, name: &str) -> Option<String> {
    let query = uri.split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .map(str::to_string)
}

/// The `secret = "…"` value of an enrollment file.
pub fn file_secret(toml: &str) -> String {
    toml.lines()
        .find_map(|l| l.trim().strip_prefix("secret = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no secret line in\n{toml}"))
        .to_string()
}

// ---- terminal drawings as a terminal would show them ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Theme {
    /// Dark text on a light background.
    Light,
    /// Light text on a dark background.
    Dark,
}

/// Grey levels: what the terminal paints for black, white and its defaults.
const BLACK: u8 = 0;
const WHITE: u8 = 255;

/// How a terminal's font covers a character cell.
#[derive(Clone, Copy, Debug)]
pub struct Font {
    /// Cell width in pixels; each half of a block glyph is this high too.
    pub cell: usize,
    /// Pixel rows at the bottom of the cell that no glyph covers (line spacing): they
    /// show the cell's background. xterm with DejaVu Sans Mono 10 has 8×17 cells whose
    /// block glyphs cover 16 rows: `cell: 8, gap: 1`.
    pub gap: usize,
}

/// A terminal that draws block elements to fill the cell exactly.
pub const EXACT: Font = Font { cell: 4, gap: 0 };
/// A terminal that draws them from the font, like xterm (measured from a screenshot).
pub const XTERM_LIKE: Font = Font { cell: 8, gap: 1 };

/// Paints the printed lines the way a terminal with `theme` and `font` shows them:
/// honouring the SGR colour codes (0, 30, 37, 39, 40, 47, 49 and the bright
/// 90/97/100/107); `▀ ▄ █` fill their halves of the cell with the foreground colour,
/// any other visible glyph (`#`) its whole glyph area (generous to the glyph, but a
/// `#` is only ever drawn in the colour of its background here), a space none; the
/// font's gap rows show the background. Returns the image's rows of grey levels.
pub fn paint(lines: &[String], theme: Theme, font: Font) -> Vec<Vec<u8>> {
    let cell = font.cell;
    let (default_fg, default_bg) = match theme {
        Theme::Light => (BLACK, WHITE),
        Theme::Dark => (WHITE, BLACK),
    };
    let mut rows: Vec<Vec<u8>> = Vec::new();
    for line in lines {
        let (mut fg, mut bg) = (default_fg, default_bg);
        let mut top: Vec<u8> = Vec::new();
        let mut bottom: Vec<u8> = Vec::new();
        let mut gap: Vec<u8> = Vec::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                assert_eq!(
                    chars.next(),
                    Some('['),
                    "only CSI sequences expected in {line:?}"
                );
                let mut params = String::new();
                for p in chars.by_ref() {
                    if p == 'm' {
                        break;
                    }
                    assert!(
                        p.is_ascii_digit() || p == ';',
                        "not an SGR sequence in {line:?}"
                    );
                    params.push(p);
                }
                for code in params.split(';') {
                    match code {
                        "" | "0" => (fg, bg) = (default_fg, default_bg),
                        "30" | "90" => fg = BLACK,
                        "37" | "97" => fg = WHITE,
                        "39" => fg = default_fg,
                        "40" | "100" => bg = BLACK,
                        "47" | "107" => bg = WHITE,
                        "49" => bg = default_bg,
                        other => panic!("unexpected SGR {other} in {line:?}"),
                    }
                }
                continue;
            }
            let (upper, lower) = match c {
                '█' => (fg, fg),
                '▀' => (fg, bg),
                '▄' => (bg, fg),
                ' ' => (bg, bg),
                c if c.is_ascii_graphic() => (fg, fg),
                other => panic!("unexpected character {other:?} in {line:?}"),
            };
            top.push(upper);
            bottom.push(lower);
            gap.push(bg);
        }
        for (part, height) in [(top, cell), (bottom, cell), (gap, font.gap)] {
            let row: Vec<u8> = part
                .iter()
                .flat_map(|&v| std::iter::repeat_n(v, cell))
                .collect();
            for _ in 0..height {
                rows.push(row.clone());
            }
        }
    }
    // A border in the terminal's background, as around any drawing on a screen.
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let border = 4 * cell;
    let mut framed = vec![vec![default_bg; width + 2 * border]; border];
    for row in rows {
        let mut r = vec![default_bg; border];
        r.extend_from_slice(&row);
        r.resize(width + 2 * border, default_bg);
        framed.push(r);
    }
    framed.extend(vec![vec![default_bg; width + 2 * border]; border]);
    framed
}

/// Writes grey levels as a binary PGM (P5) file.
pub fn write_pgm(path: &Path, rows: &[Vec<u8>]) {
    let height = rows.len();
    let width = rows.first().map(Vec::len).unwrap_or(0);
    let mut bytes = format!("P5\n{width} {height}\n255\n").into_bytes();
    for row in rows {
        assert_eq!(row.len(), width);
        bytes.extend_from_slice(row);
    }
    fs::write(path, bytes).unwrap();
}

/// What `zbarimg --raw` decodes from an image file (one symbol expected).
pub fn zbarimg(image: &Path) -> String {
    let out = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(image)
        .output()
        .expect("zbarimg not found: install Debian's zbar-tools");
    assert!(
        out.status.success(),
        "zbarimg found no QR code in {} (exit {:?})\n{}",
        image.display(),
        out.status.code(),
        text(&out.stderr)
    );
    text(&out.stdout).trim_end_matches('\n').to_string()
}

/// Paints the drawing for `theme` and `font`, writes it to `dir/name`, decodes it.
pub fn decode_drawing(
    lines: &[String],
    theme: Theme,
    font: Font,
    dir: &Path,
    name: &str,
) -> String {
    let image = dir.join(name);
    write_pgm(&image, &paint(lines, theme, font));
    zbarimg(&image)
}

/// Visible columns of a printed line (escape sequences do not take up room).
pub fn visible_columns(line: &str) -> usize {
    let mut count = 0;
    let mut in_escape = false;
    for c in line.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => count += 1,
        }
    }
    count
}

/// SVG → PNG with librsvg's `rsvg-convert`.
pub fn rsvg_convert(svg: &Path, png: &Path) {
    let out = Command::new("rsvg-convert")
        .arg("-o")
        .arg(png)
        .arg(svg)
        .output()
        .expect("rsvg-convert not found: install Debian's librsvg2-bin");
    assert!(
        out.status.success(),
        "rsvg-convert failed: {}",
        text(&out.stderr)
    );
}

// ---- a program on a pseudo-terminal ----

/// A program run by `script` on a pseudo-terminal, as a user at a terminal runs it:
/// what it prints is collected; answers are typed when a prompt shows.
pub struct OnTerminal {
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl OnTerminal {
    /// Starts `argv` (as built by `as_user_argv`) under `script -qfec`.
    pub fn start(user: &TestUser, lang: &str, argv: &[String]) -> OnTerminal {
        OnTerminal::start_sized(user, lang, argv, None)
    }

    /// `start` on a terminal of `rows` rows and 80 columns (`stty` on the pseudo-terminal
    /// before the program runs), as a window of that size would be.
    pub fn start_sized(
        user: &TestUser,
        lang: &str,
        argv: &[String],
        rows: Option<u16>,
    ) -> OnTerminal {
        let program = argv
            .iter()
            .map(|a| {
                assert!(
                    a.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/-_=.@:+".contains(c)),
                    "{a:?} needs quoting"
                );
                a.as_str()
            })
            .collect::<Vec<_>>()
            .join(" ");
        let command_line = match rows {
            Some(rows) => format!("stty rows {rows} cols 80; exec {program}"),
            None => program,
        };
        let mut child = Command::new("timeout")
            .args([TIMEOUT_SECS, "script", "-qfec", &command_line, "/dev/null"])
            .env_clear()
            .envs(user_env(user, lang))
            .current_dir(&user.home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run script (util-linux)");
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = Arc::clone(&output);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        OnTerminal {
            child,
            output,
            reader: Some(reader),
        }
    }

    pub fn output(&self) -> String {
        text(&self.output.lock().unwrap())
    }

    /// Waits until `needle` has appeared `times` times in the output.
    pub fn wait_for(&self, needle: &str, times: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = self.output();
            if seen.matches(needle).count() >= times {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "waited 30 s for {needle:?} (x{times}); the terminal shows:\n{seen}"
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// Types `line` and Enter.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the program to end; its exit code (script -e passes it on) and output.
    pub fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        drop(self.child.stdin.take());
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        (status.code(), self.output())
    }
}
