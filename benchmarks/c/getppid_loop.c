// ns per syscall: N calls of syscall(SYS_getppid) (glibc does not cache it). Prints two
// means per call: by the thread's own CPU clock (time other tasks take from this CPU, or
// the hypervisor steals, on a busy shared machine, does not count; kernel time in the
// syscalls and their tracing does) and by the wall clock.
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double ns_between(struct timespec *a, struct timespec *b)
{
    return (b->tv_sec - a->tv_sec) * 1e9 + (b->tv_nsec - a->tv_nsec);
}

int main(int argc, char **argv)
{
    long calls = argc > 1 ? atol(argv[1]) : 1000000;
    struct timespec cpu_start, cpu_end, wall_start, wall_end;
    clock_gettime(CLOCK_MONOTONIC, &wall_start);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu_start);
    for (long i = 0; i < calls; i++)
        syscall(SYS_getppid);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu_end);
    clock_gettime(CLOCK_MONOTONIC, &wall_end);
    printf("%.3f %.3f\n", ns_between(&cpu_start, &cpu_end) / calls,
           ns_between(&wall_start, &wall_end) / calls);
    return 0;
}
