/* The least a module with pam_otp's guarantees does for a wrong code, in C, with the
 * same system calls pam_otp makes and none of its parsing or code checking: the user
 * looked up; the policy file looked for under root-owned directories; the state
 * directory checked (each directory down to it, and a writable mount); the state read
 * before the prompt (the lockout check); the user's file read with the user's rights
 * after checking the directories above it; the prompt; under the person's lock the
 * state read again and the failure written (not synced); one syslog line. It computes
 * no code, so it is below what any such module can do: a floor to measure the
 * wrong-code target against, never a module to use. See BENCHMARKS.md:
 * cc -O2 -shared -fPIC -o /tmp/pam_guarded_floor.so benches/guarded_floor.c -lpam
 * then `cargo bench --bench logins -- --only baseline,otp,oath --mode wrong
 * --module /tmp/pam_guarded_floor.so`: the pam_otp row is the floor (it takes pam_otp's
 * state_dir= and secret=~/ arguments and keeps its own files in that state directory). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pwd.h>
#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <syslog.h>
#include <unistd.h>

/* lstat of every directory from / down to path, then of path: all root-owned (or the
 * user's, for the user's file), none writable by others, no symbolic links. */
static int walk(const char *path, uid_t owner) {
    char prefix[4096];
    struct stat st;
    size_t len = strlen(path);
    if (len >= sizeof prefix)
        return -1;
    /* Each prefix ending before a '/', then the whole path: "/", "/var", "/var/lib"... */
    for (size_t i = 1; i <= len; i++) {
        if (i != 1 && i != len && path[i] != '/')
            continue;
        memcpy(prefix, path, i);
        prefix[i] = 0;
        if (lstat(prefix, &st) != 0)
            return -1;
        if (S_ISLNK(st.st_mode) || (st.st_uid != 0 && st.st_uid != owner) || (st.st_mode & S_IWOTH))
            return -1;
    }
    return 0;
}

static ssize_t read_file(const char *path, int flags, char *buf, size_t cap) {
    int fd = open(path, flags | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    ssize_t got = -1;
    if (fstat(fd, &st) == 0 && (size_t)st.st_size <= cap)
        got = pread(fd, buf, st.st_size, 0);
    close(fd);
    return got;
}

int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    const char *state_dir = "/var/lib/pam-otp", *secret = ".otp.toml", *user = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "state_dir=", 10))
            state_dir = argv[i] + 10;
        else if (!strncmp(argv[i], "secret=~/", 9))
            secret = argv[i] + 9;
    }
    if (pam_get_user(pamh, &user, NULL) != PAM_SUCCESS)
        return PAM_USER_UNKNOWN;
    static char buf[16384];
    char path[4096];
    struct stat st;
    if (walk("/etc/security", 0) == 0 && lstat("/etc/security/pam_otp.toml", &st) == 0)
        read_file("/etc/security/pam_otp.toml", O_RDONLY, buf, sizeof buf);
    struct passwd pw, *found = NULL;
    char pwbuf[4096];
    if (getpwnam_r(user, &pw, pwbuf, sizeof pwbuf, &found) != 0 || !found)
        return PAM_USER_UNKNOWN;
    struct statvfs vfs;
    if (walk(state_dir, 0) != 0 || statvfs(state_dir, &vfs) != 0 || (vfs.f_flag & ST_RDONLY))
        return PAM_AUTHINFO_UNAVAIL;
    char state[4096], lock[4096];
    snprintf(state, sizeof state, "%s/uid-%u.state", state_dir, pw.pw_uid);
    snprintf(lock, sizeof lock, "%s/uid-%u.lock", state_dir, pw.pw_uid);
    read_file(state, O_RDONLY, buf, sizeof buf); /* the lockout check before the prompt */
    snprintf(path, sizeof path, "%s/%s", pw.pw_dir, secret);
    if (walk(path, pw.pw_uid) != 0)
        return PAM_AUTHINFO_UNAVAIL;
    setfsgid(pw.pw_gid);
    setfsuid(pw.pw_uid);
    ssize_t enrollment = read_file(path, O_RDONLY, buf, sizeof buf);
    setfsuid(0);
    setfsgid(0);
    if (enrollment <= 0)
        return PAM_AUTHINFO_UNAVAIL;

    char *answer = NULL;
    if (pam_prompt(pamh, PAM_PROMPT_ECHO_OFF, &answer, "Verification code: ") != PAM_SUCCESS)
        return PAM_AUTH_ERR;
    free(answer);

    int lock_fd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC, 0600);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX) != 0)
        return PAM_AUTHINFO_UNAVAIL;
    int state_fd = open(state, O_RDWR | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC, 0600);
    if (state_fd >= 0) {
        if (fstat(state_fd, &st) == 0 && st.st_size == 0)
            ftruncate(state_fd, 12288); /* the first login: a state file of pam_otp's size */
        if (fstat(state_fd, &st) == 0 && (size_t)st.st_size <= sizeof buf &&
            pread(state_fd, buf, st.st_size, 0) == st.st_size)
            pwrite(state_fd, buf, 62, 8192); /* the failure, not synced */
        close(state_fd);
    }
    close(lock_fd);
    syslog(LOG_AUTHPRIV | LOG_NOTICE, "pam_guarded_floor(%s): wrong code for %s", "x", user);
    return PAM_AUTH_ERR;
}

int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    return PAM_SUCCESS;
}
