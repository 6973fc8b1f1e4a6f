/* The pod sandbox's process for the CRI tests: pid 1 of the pod's namespaces. It waits for
 * signals, exits 0 on SIGINT/SIGTERM, and reaps every child that is re-parented to it. Built
 * static by conformance/cri/images.py (gcc -static) and packed into an image by imagetool. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    int saved = errno;
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

static void on(int sig, void (*fn)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sa.sa_flags = SA_RESTART | (sig == SIGCHLD ? SA_NOCLDSTOP : 0);
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0) {
        perror("pause: sigaction");
        _exit(2);
    }
}

int main(void) {
    if (getpid() != 1)
        fprintf(stderr, "pause: warning: not running as pid 1\n");
    on(SIGINT, quit);
    on(SIGTERM, quit);
    on(SIGCHLD, reap);
    for (;;)
        pause();
}
