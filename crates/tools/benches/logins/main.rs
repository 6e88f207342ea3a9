//! The login benchmark: pam_otp against pam_google_authenticator and pam_oath, each
//! driven through real libpam in-process, in alternating rounds; see BENCHMARKS.md.
//!
//! `cargo bench --bench logins -- [--logins N] [--rounds R] [--mode right|wrong|both]
//! [--only KEY,...]` (as root). Under `cargo test` (no `--bench` argument) it runs a
//! tiny smoke round against the debug build instead, so it cannot rot.
//!
//! Each batch of logins runs in a child process of its own (this program again, with
//! `--worker-*` arguments), so each module's peak RSS is its own. The program exits
//! non-zero if any login returns other than expected (a right code must succeed, a
//! wrong one must fail); the speed targets are printed, never enforced.

mod checker;
mod fixture;
mod pam_client;
mod redis;
mod sentinel;

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use clap::{Parser, ValueEnum};

use checker::{CheckerCopy, RunAs};
use fixture::{PrivateDir, Service, User};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Right,
    Wrong,
    Both,
}

/// Login benchmark: pam_otp vs pam_google_authenticator vs pam_oath (run as root).
#[derive(Parser, Debug)]
struct Cli {
    /// Passed by `cargo bench`; without it (under `cargo test`) a tiny smoke run is made.
    #[arg(long, hide = true)]
    bench: bool,
    /// Timed logins per contender per round.
    #[arg(long, default_value_t = 1000)]
    logins: usize,
    /// Rounds; each round runs every contender once, in rotating order.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Untimed logins at the start of each batch (warm caches).
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Right codes (each login a fresh valid HOTP code), wrong codes, or both.
    #[arg(long, value_enum, default_value_t = ModeArg::Both)]
    mode: ModeArg,
    /// Only these contenders (keys: baseline, otp, otp-tmpfs, gauth, oath, otp-limit, otp-w1, otp-w100, otp-locked, otp-redis-unix, otp-redis-tls, otp-redis-sentinel).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// pam_otp.so to measure [default: libpam_otp.so of the profile this program was built in].
    #[arg(long)]
    module: Option<PathBuf>,
    /// Directory on the real disk under which pam_otp's state goes (fsync'd). pam_otp
    /// wants root's directories from / down, so not a sticky one such as /var/tmp.
    #[arg(long, default_value = "/var/lib")]
    disk_dir: PathBuf,
    /// Directory on tmpfs for the "state on tmpfs" contender (fsync costs nothing there);
    /// /run is tmpfs on systemd systems (the report names the file system found).
    #[arg(long, default_value = "/run")]
    tmpfs_dir: PathBuf,

    /// dlopen + dlclose pairs timed per module (0: skip the loading figures).
    #[arg(long, default_value_t = 1000)]
    dlopens: usize,

    /// Worker: time `--dlopens` dlopen + dlclose pairs of this module.
    #[arg(long, hide = true)]
    worker_dlopen: Option<PathBuf>,
    #[arg(long, hide = true)]
    worker_service: Option<String>,
    #[arg(long, hide = true)]
    worker_user: Option<String>,
    /// A file of codes, one a line: login i answers line `skip + i`.
    #[arg(long, hide = true)]
    worker_codes: Option<PathBuf>,
    #[arg(long, hide = true, default_value_t = 0)]
    worker_skip: usize,
    /// The same answer for every login (wrong-code mode).
    #[arg(long, hide = true)]
    worker_answer: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Right,
    Wrong,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Right => "right code (each login a fresh valid HOTP code)",
            Mode::Wrong => "wrong code (pam_otp: max_failures=0 unless said; peers: no rate limit)",
        }
    }
    fn expected_rc(self) -> i32 {
        match self {
            Mode::Right => pam_client::PAM_SUCCESS,
            Mode::Wrong => pam_client::PAM_AUTH_ERR,
        }
    }
}

/// One PAM stack being measured.
struct Contender {
    key: &'static str,
    label: &'static str,
    service: Service,
    mode: Option<Mode>,
    /// Right-code mode: the HOTP counter its enrollment starts at (its first code).
    first_counter: usize,
    /// Wrong-code mode: the answer (a TOTP contender has its own wrong code).
    wrong_answer: String,
    /// The return code every login must give, if not the mode's usual one.
    expected_rc: Option<i32>,
    /// Wrong answers given before the rounds (to lock the user out).
    prime_wrong: usize,
    /// The worker runs as the user (the module then goes through the checker).
    run_as: Option<RunAs>,
}

/// Every login of one contender in one mode, over all rounds.
#[derive(Default)]
struct Tally {
    total_ns: Vec<u64>,
    auth_ns: Vec<u64>,
    wall_ns: u64,
    peak_rss_kib: u64,
    unexpected: usize,
    first_unexpected: Option<i32>,
}

struct Stats {
    logins_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    auth_p50_ms: f64,
    auth_p99_ms: f64,
    /// pam_start + pam_end alone (loading and unloading the stack's modules).
    start_end_p50_ms: f64,
    rss_kib: u64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1] as f64 / 1e6
}

impl Tally {
    fn stats(&self) -> Stats {
        let mut total = self.total_ns.clone();
        total.sort_unstable();
        let mut auth = self.auth_ns.clone();
        auth.sort_unstable();
        let mut start_end: Vec<u64> = self
            .total_ns
            .iter()
            .zip(&self.auth_ns)
            .map(|(t, a)| t.saturating_sub(*a))
            .collect();
        start_end.sort_unstable();
        Stats {
            logins_per_s: total.len() as f64 / (self.wall_ns.max(1) as f64 / 1e9),
            p50_ms: percentile(&total, 50.0),
            p99_ms: percentile(&total, 99.0),
            max_ms: total.last().map_or(f64::NAN, |&m| m as f64 / 1e6),
            auth_p50_ms: percentile(&auth, 50.0),
            auth_p99_ms: percentile(&auth, 99.0),
            start_end_p50_ms: percentile(&start_end, 50.0),
            rss_kib: self.peak_rss_kib,
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let cli = if args.iter().any(|a| a == "--bench") {
        Cli::parse()
    } else {
        // `cargo test` runs bench targets with libtest's arguments: ignore them and
        // make a tiny smoke run against the debug build.
        println!("logins benchmark: smoke run (use `cargo bench --bench logins` to measure)");
        Cli::parse_from(["logins", "--logins", "3", "--rounds", "1", "--warmup", "1"])
    };
    let result = match (&cli.worker_service, &cli.worker_dlopen) {
        (Some(_), _) => worker(&cli),
        (None, Some(module)) => dlopen_worker(module, cli.dlopens),
        (None, None) => benchmark(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logins benchmark: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Child process: one batch of logins; prints `rc total_ns auth_ns` per timed login,
/// then `wall NS` and `rss KIB`.
fn worker(cli: &Cli) -> Result<(), String> {
    let cstring = |s: &str| CString::new(s).map_err(|e| e.to_string());
    let service = cstring(cli.worker_service.as_deref().unwrap_or_default())?;
    let user = cstring(cli.worker_user.as_deref().ok_or("--worker-user missing")?)?;
    let count = cli.warmup + cli.logins;
    let answers: Vec<CString> = match (&cli.worker_answer, &cli.worker_codes) {
        (Some(answer), _) => vec![cstring(answer)?; count],
        (None, Some(file)) => fs::read_to_string(file)
            .map_err(|e| format!("{}: {e}", file.display()))?
            .lines()
            .skip(cli.worker_skip)
            .take(count)
            .map(cstring)
            .collect::<Result<_, _>>()?,
        (None, None) => return Err("--worker-answer or --worker-codes needed".into()),
    };
    if answers.len() != count {
        return Err(format!("{} codes for {count} logins", answers.len()));
    }
    for answer in &answers[..cli.warmup] {
        pam_client::login(&service, &user, answer);
    }
    let mut out = String::with_capacity(32 * cli.logins);
    let start = Instant::now();
    for answer in &answers[cli.warmup..] {
        let login = pam_client::login(&service, &user, answer);
        let _ = writeln!(
            out,
            "{} {} {}",
            login.rc,
            login.total.as_nanos(),
            login.authenticate.as_nanos()
        );
    }
    let wall = start.elapsed();
    let _ = writeln!(out, "wall {}", wall.as_nanos());
    let _ = writeln!(out, "rss {}", pam_client::peak_rss_kib());
    print!("{out}");
    Ok(())
}

/// Child process: `count` dlopen + dlclose pairs of `module`; prints each in ns.
fn dlopen_worker(module: &Path, count: usize) -> Result<(), String> {
    let path = CString::new(module.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    let mut out = String::with_capacity(12 * count);
    for _ in 0..count {
        let took = pam_client::dlopen_dlclose(&path)?;
        let _ = writeln!(out, "{}", took.as_nanos());
    }
    print!("{out}");
    Ok(())
}

/// p50 of `count` dlopen + dlclose pairs of `module`, in µs, in a fresh process.
fn dlopen_p50_us(module: &Path, count: usize) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = fixture::run(
        Command::new(exe)
            .args([
                "--bench",
                "--dlopens",
                &count.to_string(),
                "--worker-dlopen",
            ])
            .arg(module),
    )?;
    let mut ns: Vec<u64> = out
        .lines()
        .map(|l| {
            l.trim()
                .parse()
                .map_err(|_| format!("dlopen worker said {l:?}"))
        })
        .collect::<Result<_, _>>()?;
    ns.sort_unstable();
    Ok(percentile(&ns, 50.0) * 1e3)
}

/// Runs this program as a worker for one batch of logins; returns its output.
fn spawn_worker(
    service: &str,
    user: &str,
    warmup: usize,
    logins: usize,
    answers: &[&std::ffi::OsStr],
    run_as: Option<&RunAs>,
) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    if let Some(run_as) = run_as {
        use std::os::unix::process::CommandExt;
        cmd.uid(run_as.uid).gid(run_as.gid);
    }
    cmd.args(["--bench", "--worker-service", service])
        .args(["--worker-user", user])
        .args(["--logins", &logins.to_string()])
        .args(["--warmup", &warmup.to_string()])
        .args(answers);
    fixture::run(&mut cmd)
}

/// Runs one batch in a child process and adds what it measured to `tally`.
fn run_batch(
    cli: &Cli,
    contender: &Contender,
    user: &str,
    mode: Mode,
    codes_file: &Path,
    next_counter: &mut usize,
    tally: &mut Tally,
) -> Result<(), String> {
    let skip = next_counter.to_string();
    let codes_file = contender
        .run_as
        .as_ref()
        .map_or(codes_file, |run_as| run_as.codes_file.as_path());
    let answers: Vec<&std::ffi::OsStr> = match mode {
        Mode::Right => {
            *next_counter += cli.warmup + cli.logins;
            vec![
                "--worker-codes".as_ref(),
                codes_file.as_os_str(),
                "--worker-skip".as_ref(),
                skip.as_ref(),
            ]
        }
        Mode::Wrong => vec!["--worker-answer".as_ref(), contender.wrong_answer.as_ref()],
    };
    let out = spawn_worker(
        &contender.service.name,
        user,
        cli.warmup,
        cli.logins,
        &answers,
        contender.run_as.as_ref(),
    )?;
    let expected = contender.expected_rc.unwrap_or(mode.expected_rc());
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let number = |s: &str| -> Result<u64, String> {
            s.parse().map_err(|_| format!("worker said {line:?}"))
        };
        match fields.as_slice() {
            ["wall", ns] => tally.wall_ns += number(ns)?,
            ["rss", kib] => tally.peak_rss_kib = tally.peak_rss_kib.max(number(kib)?),
            [rc, total, auth] => {
                let rc: i32 = rc.parse().map_err(|_| format!("worker said {line:?}"))?;
                if rc != expected {
                    tally.unexpected += 1;
                    tally.first_unexpected.get_or_insert(rc);
                }
                tally.total_ns.push(number(total)?);
                tally.auth_ns.push(number(auth)?);
            }
            _ => return Err(format!("worker said {line:?}")),
        }
    }
    Ok(())
}

fn default_module() -> Result<PathBuf, String> {
    // <target>/<profile>/deps/<this> -> <target>/<profile>/libpam_otp.so
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("libpam_otp.so"))
        .ok_or_else(|| "cannot locate the build directory".into())
}

/// A Debian PAM module by file name, as an absolute path.
fn system_module(file: &str, package: &str) -> Result<PathBuf, String> {
    [
        "/lib/x86_64-linux-gnu/security",
        "/usr/lib/x86_64-linux-gnu/security",
        "/lib/security",
        "/usr/lib/security",
        "/lib64/security",
    ]
    .iter()
    .map(|dir| Path::new(dir).join(file))
    .find(|p| p.is_file())
    .ok_or_else(|| format!("{file} not found: apt-get install {package}"))
}

fn first_line(cmd: &mut Command) -> String {
    fixture::run(cmd)
        .map(|s| s.lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_else(|e| e)
}

/// Whether eatmydata (LD_PRELOAD) turns every fsync of this run into a no-op.
fn fsync_disabled() -> bool {
    std::env::var("LD_PRELOAD").is_ok_and(|p| p.contains("eatmydata"))
}

fn describe_machine(cli: &Cli) -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let fs_of = |p: &Path| {
        first_line(
            Command::new("findmnt")
                .args(["-no", "SOURCE,FSTYPE", "-T"])
                .arg(p),
        )
    };
    let fsync = if fsync_disabled() {
        "DISABLED for every module (eatmydata in LD_PRELOAD)"
    } else {
        "real"
    };
    format!(
        "machine: {nproc} cpus, {cpu}, kernel {}, load average {}\n\
         pam_otp state on disk: {} ({}); on tmpfs: {} ({})\nfsync: {fsync}",
        first_line(Command::new("uname").arg("-r")),
        load.join(" "),
        cli.disk_dir.display(),
        fs_of(&cli.disk_dir),
        cli.tmpfs_dir.display(),
        fs_of(&cli.tmpfs_dir),
    )
}

fn benchmark(cli: &Cli) -> Result<(), String> {
    if fixture::run(Command::new("id").arg("-u"))?.trim() != "0" {
        return Err("must run as root (it creates a user and /etc/pam.d services)".into());
    }
    if cli.logins == 0 || cli.rounds == 0 {
        return Err("--logins and --rounds must be at least 1".into());
    }
    let module = match &cli.module {
        Some(m) => m.clone(),
        None => default_module()?,
    };
    let module = fs::canonicalize(&module).map_err(|e| {
        format!(
            "pam_otp module {}: {e} (build it first: cargo build [--release])",
            module.display()
        )
    })?;
    let gauth_so = system_module("pam_google_authenticator.so", "libpam-google-authenticator")?;
    let oath_so = system_module("pam_oath.so", "libpam-oath")?;
    let modes: Vec<Mode> = match cli.mode {
        ModeArg::Right => vec![Mode::Right],
        ModeArg::Wrong => vec![Mode::Wrong],
        ModeArg::Both => vec![Mode::Right, Mode::Wrong],
    };

    let tag = format!("tb{}", std::process::id());
    let disk = PrivateDir::create(&cli.disk_dir.join(&tag))?;
    let tmpfs = PrivateDir::create(&cli.tmpfs_dir.join(&tag))?;
    let user = User::create(&tag)?;

    // One secret for every module; HOTP counters start at 0 (pam_otp, pam_oath) or 1
    // (pam_google_authenticator: HOTP_COUNTER must be at least 1).
    let secret = fixture::random_secret()?;
    let base32 = data_encoding::BASE32_NOPAD.encode(&secret);
    let hex = data_encoding::HEXLOWER.encode(&secret);
    const LOOKAHEAD: usize = 10;
    // The module's default max_failures: a flood of wrong codes locks the user out.
    const LOCK_AFTER: usize = 5;
    // Lockout on, but limits the run never reaches (per source and user-wide): every
    // wrong code takes the path of a user below max_failures (the failure is counted,
    // nothing is locked), which is what the default max_failures=5 gives its first four.
    const UNDER_THE_LIMIT: usize = 1_000_000_000;
    let per_batch = cli.warmup + cli.logins;
    // Right mode uses rounds * per_batch codes; a wrong code advances
    // pam_google_authenticator's counter by one, so cover those too.
    let counters = 2 * cli.rounds * per_batch + LOOKAHEAD + 10;
    let hotp = fixture::hotp_codes(&base32, counters as u64)?;
    let codes_file = disk.path.join("hotp-codes");
    fs::write(&codes_file, hotp.join("\n") + "\n").map_err(|e| e.to_string())?;
    // TOTP steps from 110 before now to ~8 hours on: more than any window and run.
    let totp = fixture::totp_codes(&base32, 110, 1100)?;
    let wrong_hotp = fixture::wrong_code(&[&hotp]);
    let wrong_totp = fixture::wrong_code(&[&totp]);

    user.write_file(
        ".otp-hotp.toml",
        &format!("version = 1\ntype = \"hotp\"\nsecret = \"{base32}\"\ncounter = 0\n"),
        0o600,
    )?;
    user.write_file(
        ".otp-totp.toml",
        &format!("version = 1\ntype = \"totp\"\nsecret = \"{base32}\"\n"),
        0o600,
    )?;
    // pam_google_authenticator's own format: secret, then option lines. No
    // DISALLOW_REUSE and no RATE_LIMIT (the equivalent of lockout off); WINDOW_SIZE 11
    // accepts the same 11 counters as pam_otp's hotp_lookahead=10 and pam_oath's window=10.
    user.write_file(
        ".google_authenticator",
        &format!(
            "{base32}\n\" HOTP_COUNTER 1\n\" WINDOW_SIZE {}\n",
            LOOKAHEAD + 1
        ),
        0o400,
    )?;
    let oath_users = disk.path.join("users.oath");
    fs::write(&oath_users, format!("HOTP {} - {hex}\n", user.name)).map_err(|e| e.to_string())?;

    let otp_line = |secret: &str, state: &Path, extra: &str| {
        format!(
            "{} secret=~/{secret} state_dir={} max_failures=0{extra}",
            module.display(),
            state.display()
        )
    };
    let service = |key: &str, line: String| Service::create(&format!("{tag}-{key}"), &line);
    let mut contenders = vec![
        Contender {
            key: "baseline",
            label: "baseline: pam_permit",
            service: service("permit", "pam_permit.so".into())?,
            mode: Some(Mode::Right),
            first_counter: 0,
            wrong_answer: String::new(),
            expected_rc: None,
            prime_wrong: 0,
            run_as: None,
        },
        Contender {
            key: "baseline",
            label: "baseline: pam_deny",
            service: service("deny", "pam_deny.so".into())?,
            mode: Some(Mode::Wrong),
            first_counter: 0,
            wrong_answer: wrong_hotp.clone(),
            expected_rc: None,
            prime_wrong: 0,
            run_as: None,
        },
        Contender {
            key: "otp",
            label: "pam_otp",
            service: service(
                "otp",
                otp_line(".otp-hotp.toml", &disk.subdir("state-otp")?, ""),
            )?,
            mode: None,
            first_counter: 0,
            wrong_answer: wrong_hotp.clone(),
            expected_rc: None,
            prime_wrong: 0,
            run_as: None,
        },
        Contender {
            key: "otp-tmpfs",
            label: "pam_otp, state on tmpfs",
            service: service(
                "otp-tmpfs",
                otp_line(".otp-hotp.toml", &tmpfs.subdir("state-otp")?, ""),
            )?,
            mode: None,
            first_counter: 0,
            wrong_answer: wrong_hotp.clone(),
            expected_rc: None,
            prime_wrong: 0,
            run_as: None,
        },
        Contender {
            key: "gauth",
            label: "pam_google_authenticator",
            service: service("gauth", gauth_so.display().to_string())?,
            mode: None,
            first_counter: 1,
            wrong_answer: wrong_hotp.clone(),
            expected_rc: None,
            prime_wrong: 0,
            run_as: None,
        },
        Contender {
            key: "oath",
            label: "pam_oath",
            service: service(
                "oath",
                format!(
                    "{} usersfile={} window={LOOKAHEAD} digits=6",
                    oath_so.display(),
                    oath_users.display()
                ),
            )?,
            mode: None,
            first_counter: 0,
            wrong_answer: wrong_hotp.clone(),
            expected_rc: None,
            prime_wrong: 0,
            run_as: None,
        },
        Contender {
            key: "otp-limit",
            label: "pam_otp, lockout on",
            service: service(
                "otp-limit",
                format!(
                    "{} secret=~/.otp-hotp.toml state_dir={} max_failures={UNDER_THE_LIMIT} max_failures_user={UNDER_THE_LIMIT} lockout=86400",
                    module.display(),
                    disk.subdir("state-limit")?.display()
                ),
            )?,
            mode: Some(Mode::Wrong),
            first_counter: 0,
            wrong_answer: wrong_hotp.clone(),
            expected_rc: None,
            prime_wrong: 0,
            run_as: None,
        },
        Contender {
            key: "otp-w1",
            label: "pam_otp TOTP window=1",
            service: service(
                "otp-w1",
                otp_line(".otp-totp.toml", &disk.subdir("state-w1")?, " window=1"),
            )?,
            mode: Some(Mode::Wrong),
            first_counter: 0,
            wrong_answer: wrong_totp.clone(),
            expected_rc: None,
            prime_wrong: 0,
            run_as: None,
        },
        Contender {
            key: "otp-w100",
            label: "pam_otp TOTP window=100",
            service: service(
                "otp-w100",
                otp_line(".otp-totp.toml", &disk.subdir("state-w100")?, " window=100"),
            )?,
            mode: Some(Mode::Wrong),
            first_counter: 0,
            wrong_answer: wrong_totp.clone(),
            expected_rc: None,
            prime_wrong: 0,
            run_as: None,
        },
        Contender {
            key: "otp-locked",
            label: "pam_otp, user locked out",
            service: service(
                "otp-locked",
                format!(
                    "{} secret=~/.otp-hotp.toml state_dir={} max_failures={LOCK_AFTER} lockout=86400",
                    module.display(),
                    disk.subdir("state-locked")?.display()
                ),
            )?,
            mode: Some(Mode::Wrong),
            first_counter: 0,
            wrong_answer: wrong_hotp.clone(),
            expected_rc: Some(pam_client::PAM_PERM_DENIED),
            prime_wrong: LOCK_AFTER,
            run_as: None,
        },
    ];
    // Fleet mode: the same HOTP enrollment against a real redis-server, one connection per
    // login as a PAM module must, each contender under its own key prefix and floor.
    let wanted = |key: &str| cli.only.is_empty() || cli.only.iter().any(|k| k == key);
    let redis_server =
        if (wanted("otp-redis-unix") || wanted("otp-redis-tls") || wanted("otp-redis-sentinel"))
            && Path::new(redis::REDIS_SERVER).exists()
        {
            Some(redis::Redis::start(&disk.subdir("redis")?, &tag)?)
        } else {
            println!(
                "(no {}: the Redis contenders are left out)",
                redis::REDIS_SERVER
            );
            None
        };
    let redis_sentinel = match &redis_server {
        Some(server)
            if wanted("otp-redis-sentinel") && Path::new(sentinel::REDIS_SENTINEL).exists() =>
        {
            Some(sentinel::Sentinel::start(server)?)
        }
        _ => None,
    };
    if let Some(server) = &redis_server {
        let mut fleet = vec![
            (
                "otp-redis-unix",
                "pam_otp, Redis unix socket",
                server.unix_args("bench-unix"),
            ),
            (
                "otp-redis-tls",
                "pam_otp, Redis TLS",
                server.tls_args("bench-tls"),
            ),
        ];
        if let Some(sentinel) = &redis_sentinel {
            fleet.push((
                "otp-redis-sentinel",
                "pam_otp, Sentinel + TLS",
                sentinel.args(server, "bench-sentinel"),
            ));
        }
        for (key, label, args) in fleet {
            contenders.push(Contender {
                key,
                label,
                service: service(
                    key,
                    otp_line(
                        ".otp-hotp.toml",
                        &disk.subdir(&format!("state-{key}"))?,
                        &format!(" {args}"),
                    ),
                )?,
                mode: None,
                first_counter: 0,
                wrong_answer: wrong_hotp.clone(),
                expected_rc: None,
                prime_wrong: 0,
                run_as: None,
            });
        }
    }
    // A right-code login as a screen locker makes it: the worker runs as the user, so the
    // module goes through its setuid checker, which takes its policy from
    // /etc/security/pam_otp.toml (state in /var/lib/pam-otp by default), not from the line;
    // hence the user's ~/.otp.toml, and a codes file the user can read.
    let checker_copy = match wanted("otp-checker") && modes.contains(&Mode::Right) {
        true => Some(CheckerCopy::create(&module, &tag, &user)?),
        false => None,
    };
    if let Some(copy) = &checker_copy {
        user.write_file(
            ".otp.toml",
            &format!("version = 1\ntype = \"hotp\"\nsecret = \"{base32}\"\ncounter = 0\n"),
            0o600,
        )?;
        let codes_file = user.write_file(".bench-codes", &(hotp.join("\n") + "\n"), 0o600)?;
        contenders.push(Contender {
            key: "otp-checker",
            label: "pam_otp, via pam_otp_check",
            service: service("otp-checker", copy.module.display().to_string())?,
            mode: Some(Mode::Right),
            first_counter: 0,
            wrong_answer: wrong_hotp.clone(),
            expected_rc: None,
            prime_wrong: 0,
            run_as: Some(RunAs {
                uid: user.uid,
                gid: user.gid,
                codes_file,
            }),
        });
    }
    if !cli.only.is_empty() {
        contenders.retain(|c| cli.only.iter().any(|k| k == c.key));
    }

    println!(
        "pam-otp login benchmark: {} timed logins x {} rounds per contender and mode \
         (+{} warm-up per batch), contenders alternating",
        cli.logins, cli.rounds, cli.warmup
    );
    println!("{}", describe_machine(cli));
    println!("pam_otp module: {}", module.display());
    println!("each login: pam_start + pam_authenticate + pam_end in one process; a fresh process per batch\n");

    let mut failed = false;
    let mut all: Vec<(Mode, &'static str, Stats)> = Vec::new();
    for &mode in &modes {
        let in_mode: Vec<&Contender> = contenders
            .iter()
            .filter(|c| c.mode.is_none_or(|m| m == mode))
            .collect();
        let mut tallies: Vec<Tally> = in_mode.iter().map(|_| Tally::default()).collect();
        let mut next: Vec<usize> = in_mode.iter().map(|c| c.first_counter).collect();
        for contender in in_mode.iter().filter(|c| c.prime_wrong > 0) {
            let answer = ["--worker-answer".as_ref(), contender.wrong_answer.as_ref()];
            spawn_worker(
                &contender.service.name,
                &user.name,
                0,
                contender.prime_wrong,
                &answer,
                contender.run_as.as_ref(),
            )?;
        }
        for round in 0..cli.rounds {
            // Rotate the order so no contender always goes first.
            for i in 0..in_mode.len() {
                let k = (i + round) % in_mode.len();
                run_batch(
                    cli,
                    in_mode[k],
                    &user.name,
                    mode,
                    &codes_file,
                    &mut next[k],
                    &mut tallies[k],
                )?;
            }
        }
        println!("== {}", mode.name());
        println!(
            "{:<26} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>10}",
            "contender",
            "logins/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "auth p50",
            "auth p99",
            "start+end",
            "peak RSS"
        );
        for (contender, tally) in in_mode.iter().zip(&tallies) {
            let s = tally.stats();
            println!(
                "{:<26} {:>9.0} {:>8.3} {:>8.3} {:>8.3} {:>9.3} {:>9.3} {:>9.3} {:>6} KiB",
                contender.label,
                s.logins_per_s,
                s.p50_ms,
                s.p99_ms,
                s.max_ms,
                s.auth_p50_ms,
                s.auth_p99_ms,
                s.start_end_p50_ms,
                s.rss_kib
            );
            if tally.unexpected > 0 {
                failed = true;
                println!(
                    "  FAILED: {} of {} logins returned {} (expected {})",
                    tally.unexpected,
                    tally.total_ns.len(),
                    tally.first_unexpected.unwrap_or(-1),
                    contender.expected_rc.unwrap_or(mode.expected_rc())
                );
            }
            all.push((mode, contender.label, s));
        }
        println!();
    }
    if failed {
        // Figures of a broken run are not worth comparing.
        return Err("some logins did not return what they should (see FAILED above)".into());
    }
    let mut loading = Vec::new();
    if cli.dlopens > 0 {
        println!(
            "== loading: dlopen(RTLD_NOW) + dlclose, {} pairs per module in a fresh process",
            cli.dlopens
        );
        let permit = system_module("pam_permit.so", "libpam-modules")?;
        for (label, path) in [
            ("pam_permit", &permit),
            ("pam_otp", &module),
            ("pam_google_authenticator", &gauth_so),
            ("pam_oath", &oath_so),
        ] {
            let p50 = dlopen_p50_us(path, cli.dlopens)?;
            println!("{label:<26} p50 {p50:>7.1} µs");
            loading.push((label, p50));
        }
        println!();
    }
    print_ratios(&all);
    print_targets(&all, &loading);
    Ok(())
}

fn find<'a>(all: &'a [(Mode, &str, Stats)], mode: Mode, label: &str) -> Option<&'a Stats> {
    all.iter()
        .find(|(m, l, _)| *m == mode && *l == label)
        .map(|(_, _, s)| s)
}

fn print_ratios(all: &[(Mode, &str, Stats)]) {
    println!("== ratios pam_otp / peer (logins/s: higher is better for pam_otp; latency and RSS: lower is)");
    for mode in [Mode::Right, Mode::Wrong] {
        for ours in ["pam_otp", "pam_otp, state on tmpfs"] {
            for peer in ["pam_google_authenticator", "pam_oath"] {
                let (Some(a), Some(b)) = (find(all, mode, ours), find(all, mode, peer)) else {
                    continue;
                };
                println!(
                    "{:<5} {:<23} / {:<24} logins/s {:>5.2}  p50 {:>5.2}  p99 {:>5.2}  peak RSS {:>5.2}",
                    if mode == Mode::Right { "right" } else { "wrong" },
                    ours,
                    peer,
                    a.logins_per_s / b.logins_per_s,
                    a.p50_ms / b.p50_ms,
                    a.p99_ms / b.p99_ms,
                    a.rss_kib as f64 / b.rss_kib.max(1) as f64
                );
            }
        }
    }
    println!();
}

fn print_targets(all: &[(Mode, &str, Stats)], loading: &[(&str, f64)]) {
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("== targets (printed, not enforced)");
    let oath_right = find(all, Mode::Right, "pam_oath");
    let oath_wrong = find(all, Mode::Wrong, "pam_oath");
    let throughput = |what: &str, ours: Option<&Stats>, peer: Option<&Stats>, at_least: f64| {
        if let (Some(ours), Some(peer)) = (ours, peer) {
            let ratio = ours.logins_per_s / peer.logins_per_s;
            println!(
                "{what}: {:.0} vs pam_oath {:.0} logins/s = {ratio:.2}x (target >= {at_least}x): {}",
                ours.logins_per_s,
                peer.logins_per_s,
                verdict(ratio >= at_least)
            );
        }
    };
    throughput(
        "right code, durable before PAM_SUCCESS",
        find(all, Mode::Right, "pam_otp"),
        oath_right,
        1.5,
    );
    throughput(
        "wrong code, lockout on, user under the limit",
        find(all, Mode::Wrong, "pam_otp, lockout on"),
        oath_wrong,
        1.0,
    );
    throughput(
        "wrong code, max_failures=0",
        find(all, Mode::Wrong, "pam_otp"),
        oath_wrong,
        1.0,
    );
    throughput(
        "flood against a locked user (vs pam_oath's wrong code)",
        find(all, Mode::Wrong, "pam_otp, user locked out"),
        oath_wrong,
        1.2,
    );
    let load = |label: &str| loading.iter().find(|(l, _)| *l == label).map(|(_, us)| *us);
    if let (Some(otp), Some(oath)) = (load("pam_otp"), load("pam_oath")) {
        let ratio = otp / oath;
        println!(
            "loading, dlopen + dlclose p50: pam_otp {otp:.1} µs vs pam_oath {oath:.1} µs = {ratio:.2}x \
             (target <= 1.2x): {}",
            verdict(ratio <= 1.2)
        );
    }
    for mode in [Mode::Right, Mode::Wrong] {
        let peers = ["pam_google_authenticator", "pam_oath"]
            .iter()
            .filter_map(|p| find(all, mode, p))
            .map(|s| s.rss_kib)
            .max();
        if let (Some(otp), Some(peers)) = (find(all, mode, "pam_otp"), peers) {
            let ratio = otp.rss_kib as f64 / peers as f64;
            println!(
                "peak RSS, {} code: pam_otp {} KiB vs the larger peer's {peers} KiB = {ratio:.2}x \
                 (target <= 1.10x): {}",
                if mode == Mode::Right {
                    "right"
                } else {
                    "wrong"
                },
                otp.rss_kib,
                verdict(ratio <= 1.10)
            );
        }
    }
    if let (Some(w1), Some(w100)) = (
        find(all, Mode::Wrong, "pam_otp TOTP window=1"),
        find(all, Mode::Wrong, "pam_otp TOTP window=100"),
    ) {
        let ratio = w1.logins_per_s / w100.logins_per_s;
        println!(
            "wall time per login, TOTP wrong code, window=100 / window=1: {ratio:.2} \
             (target <= 2): {}",
            verdict(ratio <= 2.0)
        );
    }
    if let Some(otp) = find(all, Mode::Right, "pam_otp") {
        // What pam_otp adds to a login: its own work inside pam_authenticate, plus
        // the extra cost of loading it in pam_start (start+end p50 over the baseline's).
        let loading = find(all, Mode::Right, "baseline: pam_permit").map_or(0.0, |b| {
            (otp.start_end_p50_ms - b.start_end_p50_ms).max(0.0)
        });
        let added = otp.auth_p99_ms + loading;
        println!(
            "p99 of a right-code login, {}: whole login {:.3} ms (target < 1.5 ms): {}; \
             what pam_otp adds {added:.3} ms (pam_authenticate p99 {:.3} + loading {loading:.3}): {}",
            if fsync_disabled() {
                "fsync disabled by eatmydata"
            } else {
                "state synced"
            },
            otp.p99_ms,
            verdict(otp.p99_ms < 1.5),
            otp.auth_p99_ms,
            verdict(added < 1.5)
        );
    }
    if let (Some(otp), Some(ga)) = (
        find(all, Mode::Right, "pam_otp"),
        find(all, Mode::Right, "pam_google_authenticator"),
    ) {
        println!(
            "right code, logins/s pam_otp {:.0} >= pam_google_authenticator {:.0}: {}",
            otp.logins_per_s,
            ga.logins_per_s,
            verdict(otp.logins_per_s >= ga.logins_per_s)
        );
    }
}
