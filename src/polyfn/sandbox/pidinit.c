/* The two processes of an instance's pid namespace that only wait, without a Python interpreter each.
 *
 * sandbox/namespaces.py forks them from the zygote's blank (so they start as copies of a Python process)
 * and then execs this program in each, which drops the copy: an idle instance no longer pays for two
 * interpreters' private pages. Same behaviour as the Python functions it replaces there (`init`,
 * `supervise`), which stay as the fallback when this program is not built:
 *
 *   pidinit init FD PID       pid 1 of the namespace: reap every child; when PID (the instance, pid 2)
 *                             ends, write its raw wait status (4 bytes, little-endian) to FD and exit 0
 *                             (the death of pid 1 kills whatever is left in the namespace).
 *   pidinit supervise FD PID  outside the namespace (the pid the server knows): wait for init (PID), read
 *                             the instance's status from FD and end exactly as the instance ended (same
 *                             exit code, or the same signal).
 *
 * Every other descriptor is closed; the die-with-parent signal the caller set is kept (PR_SET_PDEATHSIG
 * survives exec of a plain binary) and set again here. Built statically (`polyfn.sandbox.pidinit`), so
 * its text is shared by every instance and nothing is loaded at exec. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define BROKEN 70 /* as the Python helpers: something impossible happened */

static void keep_only(int fd) {
    if (fd > 3 && syscall(SYS_close_range, 3, fd - 1, 0) != 0)
        for (int i = 3; i < fd; i++) close(i);
    if (syscall(SYS_close_range, fd + 1, ~0U, 0) != 0)
        for (int i = fd + 1; i < 65536; i++) close(i);
}

static void end_like(int status) {
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        signal(sig, SIG_DFL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
        kill(getpid(), sig);
        _exit(128 + sig);
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : BROKEN);
}

static int init(int report, pid_t instance) {
    signal(SIGCHLD, SIG_DFL); /* ignored, it would reap the instance before we see it */
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, __WALL);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            _exit(BROKEN);
        }
        if (pid == instance) {
            unsigned char le[4] = {status & 0xff, (status >> 8) & 0xff, (status >> 16) & 0xff,
                                   (status >> 24) & 0xff};
            while (write(report, le, 4) < 0 && errno == EINTR)
                ;
            _exit(0);
        }
    }
}

static int supervise(int report, pid_t child) {
    /* The server signals this process to end the instance: no signal stays ignored or blocked (a Python
       parent ignores SIGPIPE and SIGXFSZ, and exec keeps what is ignored). */
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int status;
    while (waitpid(child, &status, 0) < 0)
        if (errno != EINTR)
            _exit(BROKEN);
    unsigned char le[4];
    ssize_t got = 0;
    while (got < 4) {
        ssize_t n = read(report, le + got, 4 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += n;
    }
    if (got == 4 && WIFEXITED(status)) /* init ended normally: the instance's status is news */
        status = le[0] | le[1] << 8 | le[2] << 16 | (int)((unsigned)le[3] << 24);
    end_like(status);
    return BROKEN;
}

int main(int argc, char **argv) {
    if (argc != 4)
        return 64;
    char *end;
    long fd = strtol(argv[2], &end, 10);
    if (*end || fd < 0)
        return 64;
    long pid = strtol(argv[3], &end, 10);
    if (*end || pid <= 0)
        return 64;
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    keep_only((int)fd);
    if (strcmp(argv[1], "init") == 0)
        return init((int)fd, (pid_t)pid);
    if (strcmp(argv[1], "supervise") == 0)
        return supervise((int)fd, (pid_t)pid);
    return 64;
}
