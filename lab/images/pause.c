/* The pod sandbox's process: holds the pod's namespaces open and does nothing else.
 * Exits on SIGINT/SIGTERM (StopPodSandbox) and reaps children re-parented to it when the
 * pod shares one PID namespace. Built with `gcc -static -Os` into a one-file image. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void leave(int signo) { _exit(signo == SIGTERM ? 0 : 128 + signo); }

static void reap(int signo) {
    (void)signo;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction quit = {.sa_handler = leave};
    struct sigaction child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    if (getpid() != 1) {
        static const char warning[] = "pause: expected to run as PID 1 of its namespace\n";
        (void)write(STDERR_FILENO, warning, sizeof warning - 1);
    }
    if (sigaction(SIGINT, &quit, NULL) || sigaction(SIGTERM, &quit, NULL) ||
        sigaction(SIGCHLD, &child, NULL))
        return 1;
    for (;;)
        pause();
}
