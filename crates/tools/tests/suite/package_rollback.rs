//! Removing the installed Debian package, with a real sshd and real sudo using it: `dpkg -r`
//! is refused while PAM files name the module, and README's "Roll back" steps (restore the
//! PAM files, remove the sshd drop-in, reload sshd, then `dpkg -r`) leave both working
//! without a code.
//!
//! The test removes the package, so it only runs when asked for:
//! `packaging/check-deb.sh` runs it after `dpkg -i` (`cargo test --test suite -- --ignored
//! --exact package_rollback::<test>`) and installs the package again afterwards. The
//! services are test copies (`/etc/pam.d/tx-rb-…`), made from `config/pam.d/sshd-otp`
//! and `sudo-otp`, and their "originals" are this machine's Debian `/etc/pam.d/sshd` and
//! `/etc/pam.d/sudo`; the system's own files are never touched.

use crate::support;
use crate::support::clients;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::enrollment_tools::text;
use crate::support::secret_store::StoreSecret;
use clients::{run_sudo, Answers, InstalledService, ShellUser, SshClient, Sshd, SudoRule, SudoRun};
use support::{new_secret, now, scratch_path, totp_at, totp_enrollment, unique};

const PACKAGE_MODULE: &str = "/usr/lib/x86_64-linux-gnu/security/pam_otp.so";

fn package_installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", "pam-otp"])
        .output()
        .is_ok_and(|out| out.stdout == b"installed")
}

/// What dpkg is to do with the package: `install`, or `deinstall` after a `dpkg -r`.
fn package_want() -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Want}", "pam-otp"])
        .output()
        .expect("run dpkg-query");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dpkg_remove() -> Output {
    Command::new("dpkg")
        .args(["-r", "pam-otp"])
        .env_remove("PAM_OTP_FORCE_REMOVE")
        .output()
        .expect("run dpkg -r")
}

/// The README's backup of a PAM file (`cp /etc/pam.d/sshd /root/pam.d.orig/sshd`), made
/// from this machine's Debian file outside `/etc/pam.d`, where libpam would take it for
/// a service of its own; removed on drop.
struct Backup {
    dir: PathBuf,
    path: PathBuf,
}

impl Backup {
    fn of(service: &InstalledService, debian_file: &str) -> Backup {
        let original = fs::read_to_string(debian_file)
            .unwrap_or_else(|e| panic!("cannot read {debian_file}: {e}"));
        assert!(
            !original.contains("pam_otp"),
            "{debian_file} already uses pam_otp: it cannot stand for the original"
        );
        let dir = scratch_path("txrb-pam.d.orig");
        fs::create_dir(&dir).unwrap();
        let path = dir.join(service.pam_file.file_name().unwrap());
        fs::write(&path, original).unwrap();
        Backup { dir, path }
    }

    /// The roll-back's first step: `cp /root/pam.d.orig/sshd /etc/pam.d/sshd`.
    fn restore(&self, service: &InstalledService) {
        fs::copy(&self.path, &service.pam_file).unwrap();
    }
}

impl Drop for Backup {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The sshd drop-in directory (Debian's `/etc/ssh/sshd_config.d`), holding a copy of
/// the shipped `pam-otp.conf`; removed on drop.
struct DropInDir {
    dir: PathBuf,
}

impl DropInDir {
    fn with_shipped_drop_in() -> DropInDir {
        let dir = scratch_path("txrb-sshd_config.d");
        fs::create_dir(&dir).unwrap();
        fs::copy(
            clients::shipped("sshd_config.d/pam-otp.conf"),
            dir.join("pam-otp.conf"),
        )
        .unwrap();
        DropInDir { dir }
    }

    fn pattern(&self) -> PathBuf {
        self.dir.join("*.conf")
    }

    fn drop_in(&self) -> PathBuf {
        self.dir.join("pam-otp.conf")
    }
}

impl Drop for DropInDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn code_at(secret: &str, offset_steps: i64) -> String {
    totp_at(secret, now() + 30 * offset_steps, &[])
}

#[track_caller]
fn assert_sudo_ran(run: &SudoRun, with_code: bool, what: &str) {
    assert!(
        run.status == Some(0) && run.stdout.trim() == "root",
        "{what}: expected /usr/bin/id to run as root\n{}",
        run.describe()
    );
    assert_eq!(
        run.stderr.contains("Verification code: "),
        with_code,
        "{what}: the code was {}asked for\n{}",
        if with_code { "not " } else { "" },
        run.describe()
    );
}

#[test]
#[ignore = "removes the installed pam-otp package: packaging/check-deb.sh runs it after dpkg -i"]
fn package_removal_is_refused_until_the_documented_roll_back() {
    assert!(
        package_installed() && Path::new(PACKAGE_MODULE).is_file(),
        "the pam-otp package is not installed (packaging/check-deb.sh installs it first)"
    );
    assert_eq!(
        support::module_path(),
        Path::new(PACKAGE_MODULE),
        "the services must use the packaged module: run with PAM_OTP_MODULE=pam_otp.so"
    );
    let user = ShellUser::new();
    let password = user.set_password();
    let secret = new_secret();
    // sshd reads ~/.otp.toml; sudo-otp reads the administrator's store.
    user.enroll(&totp_enrollment(&secret));
    let _stored = StoreSecret::write(&user.name, &totp_enrollment(&secret));
    let client = SshClient::new();
    user.authorize_key(&client.public_key());

    let sshd_service = InstalledService::install("sshd-otp", "tx-rb-sshd-", &[]);
    let sudo_service = InstalledService::install("sudo-otp", "tx-rb-sudo-", &[]);
    let sshd_backup = Backup::of(&sshd_service, "/etc/pam.d/sshd");
    let sudo_backup = Backup::of(&sudo_service, "/etc/pam.d/sudo");
    let drop_ins = DropInDir::with_shipped_drop_in();
    let mut sshd = Sshd::start_including(&sshd_service, &[], &drop_ins.pattern());
    let _rule = SudoRule::install(&user.name, &sudo_service);
    let marker = unique("tx-rb-ran-");
    let command = format!("echo {marker}");
    let ssh = |sshd: &Sshd, answers: &Answers| client.run(sshd, &user.name, answers, 1, &command);
    let with_code = |code: String| Answers {
        code: Some(code),
        password: None,
    };

    // In use: key + code for ssh, password + code for sudo.
    let run = ssh(&sshd, &with_code(code_at(&secret, 0)));
    run.assert_ran(&marker, "ssh, key + code, before removal");
    assert_eq!(run.code_prompts(), 1, "{}", run.describe());
    let password_and_code = |code: String| run_sudo(&user.name, &[&password, &code]);
    assert_sudo_ran(
        &password_and_code(code_at(&secret, 0)),
        true,
        "sudo before removal",
    );

    // dpkg -r is refused, naming both files and the way round; nothing changes.
    let refused = dpkg_remove();
    let stderr = text(&refused.stderr);
    assert!(
        !refused.status.success(),
        "dpkg -r removed the package while PAM files use it\n{}{stderr}",
        text(&refused.stdout)
    );
    for service in [&sshd_service, &sudo_service] {
        assert!(
            stderr.contains(&format!("  {}\n", service.pam_file.display())),
            "the refusal does not name {}:\n{stderr}",
            service.pam_file.display()
        );
    }
    assert!(
        stderr.contains("PAM_OTP_FORCE_REMOVE=1 dpkg -r pam-otp") && stderr.contains("Roll back"),
        "the refusal does not say how to roll back or override:\n{stderr}"
    );
    assert!(
        package_installed() && Path::new(PACKAGE_MODULE).is_file(),
        "a refused dpkg -r left the package half removed"
    );
    // dpkg marked it for removal before prerm refused; the refusal says how to unmark it,
    // and that command does.
    assert_eq!(package_want(), "deinstall");
    let keep = "echo pam-otp install | dpkg --set-selections";
    assert!(stderr.contains(&format!("  {keep}\n")), "{stderr}");
    let kept = Command::new("sh").args(["-c", keep]).output().unwrap();
    assert!(kept.status.success(), "{kept:?}");
    assert_eq!(package_want(), "install", "after `{keep}`");
    let run = ssh(&sshd, &with_code(code_at(&secret, 1)));
    run.assert_ran(&marker, "ssh, key + code, after the refused removal");
    assert_sudo_ran(
        &password_and_code(code_at(&secret, 1)),
        true,
        "sudo after the refused removal",
    );

    // README's "Roll back": restore the PAM files, remove the drop-in, reload sshd,
    // then remove the package.
    sshd_backup.restore(&sshd_service);
    sudo_backup.restore(&sudo_service);
    fs::remove_file(drop_ins.drop_in()).unwrap();
    sshd.reload();
    let removed = dpkg_remove();
    assert!(
        removed.status.success(),
        "dpkg -r after the roll-back failed\n{}{}",
        text(&removed.stdout),
        text(&removed.stderr)
    );
    assert!(
        !Path::new(PACKAGE_MODULE).exists(),
        "dpkg -r left the module"
    );

    // Both work again as before pam-otp: the key alone, the password alone.
    let run = ssh(&sshd, &Answers::default());
    run.assert_ran(&marker, "ssh with the key alone after the roll-back");
    assert_eq!(run.code_prompts(), 0, "{}", run.describe());
    assert_sudo_ran(
        &run_sudo(&user.name, &[&password]),
        false,
        "sudo with the password alone after the roll-back",
    );
}
