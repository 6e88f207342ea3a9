/* The least a module that keeps a spent code durable can do per login: ask for the
 * code, then make one small write durable in place (pwritev2 with RWF_DSYNC) in a file
 * made beforehand. No user lookup, no check: a floor to measure the right-code target
 * against, never a module to use. See BENCHMARKS.md:
 * cc -O2 -shared -fPIC -o /tmp/pam_durable_floor.so benches/durable_floor.c -lpam
 * head -c 12288 /dev/zero > /var/lib/pam-durable-floor
 * then `cargo bench --bench logins -- --only baseline,otp,oath --mode right
 * --module /tmp/pam_durable_floor.so`: the pam_otp row is the floor. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    char *answer = NULL;
    char record[62] = {0};
    if (pam_prompt(pamh, PAM_PROMPT_ECHO_OFF, &answer, "Verification code: ") != PAM_SUCCESS)
        return PAM_AUTH_ERR;
    if (answer) {
        strncpy(record, answer, sizeof record - 1);
        free(answer);
    }
    int fd = open("/var/lib/pam-durable-floor", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return PAM_AUTH_ERR;
    struct iovec iov = {record, sizeof record};
    ssize_t written = pwritev2(fd, &iov, 1, 8192, RWF_DSYNC);
    close(fd);
    return written == (ssize_t)sizeof record ? PAM_SUCCESS : PAM_AUTH_ERR;
}

int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    return PAM_SUCCESS;
}
