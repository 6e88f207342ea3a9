//! `sudo -i` with the shipped `config/pam.d/sudo-i-otp`, through the real sudo.
//!
//! On Debian `sudo -i` (a login shell) authenticates through the `sudo-i` service
//! (sudoers `pam_login_service`), not `sudo`. Each test installs the shipped file as its
//! own service and names it as the login service of one test user only; plain sudo keeps
//! Debian's `/etc/pam.d/sudo`, which has no pam_otp, so a code prompt proves that
//! `sudo -i` went through the shipped file. Codes come from oathtool. Must run as root.

use crate::support;
use crate::support::clients;

use clients::{run_sudo_login, SudoRule, SudoRun, SudoSetup, SUDO_PASSWORD_PROMPT};
use support::{totp, wrong_totp};

type Setup = SudoSetup;

impl SudoSetup {
    fn login_shell() -> Setup {
        SudoSetup::new(
            "sudo-i-otp",
            "tx-sudo-i-otp-",
            SudoRule::install_login_shell,
        )
    }

    fn sudo_i(&self, code: &str) -> SudoRun {
        run_sudo_login(&self.user.name, &[&self.password, code])
    }
}

fn asked_for_password_then_code(run: &SudoRun) -> bool {
    let password = run.stderr.find(SUDO_PASSWORD_PROMPT);
    let code = run.stderr.find("Verification code: ");
    matches!((password, code), (Some(p), Some(c)) if p < c)
}

#[test]
fn sudo_i_password_and_right_code_runs_the_login_shell() {
    let s = Setup::login_shell();
    let run = s.sudo_i(&totp(&s.secret));
    assert!(
        run.status == Some(0) && run.stdout.trim() == "root",
        "expected root's login shell to run /usr/bin/id\n{}",
        run.describe()
    );
    assert!(asked_for_password_then_code(&run), "{}", run.describe());
}

#[test]
fn sudo_i_password_and_wrong_code_is_refused() {
    let s = Setup::login_shell();
    let run = s.sudo_i(&wrong_totp(&s.secret));
    assert!(
        run.status == Some(1) && !run.stdout.contains("root"),
        "expected sudo -i to refuse\n{}",
        run.describe()
    );
    assert!(asked_for_password_then_code(&run), "{}", run.describe());
}
