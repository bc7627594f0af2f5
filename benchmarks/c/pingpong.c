// Context-switch cost: two processes pass one byte back and forth over two pipes, both
// pinned to one CPU so every hand-over is a switch. Prints the CPU time both processes
// used per round trip (2 switches, 4 syscalls) in ns: time other tasks take from the CPU
// (a busy, shared machine) does not count.
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

int main(int argc, char **argv)
{
    long trips = argc > 1 ? atol(argv[1]) : 100000;
    int cpu = argc > 2 ? atoi(argv[2]) : 0;
    int there[2], back[2];
    char byte = 0;
    if (pipe(there) || pipe(back))
        return 1;
    pin(cpu);
    pid_t child = fork();
    if (child == 0) {
        for (long i = 0; i < trips; i++) {
            if (read(there[0], &byte, 1) != 1 || write(back[1], &byte, 1) != 1)
                _exit(1);
        }
        _exit(0);
    }
    for (long i = 0; i < trips; i++) {
        if (write(there[1], &byte, 1) != 1 || read(back[0], &byte, 1) != 1)
            return 1;
    }
    int status;
    struct rusage child_usage, own_usage;
    wait4(child, &status, 0, &child_usage);
    getrusage(RUSAGE_SELF, &own_usage);
    double us = 0;
    struct rusage *both[] = {&child_usage, &own_usage};
    for (int i = 0; i < 2; i++) {
        us += both[i]->ru_utime.tv_sec * 1e6 + both[i]->ru_utime.tv_usec;
        us += both[i]->ru_stime.tv_sec * 1e6 + both[i]->ru_stime.tv_usec;
    }
    printf("%.3f\n", us * 1000 / trips);
    return 0;
}
