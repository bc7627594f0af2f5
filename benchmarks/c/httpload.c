// HTTP/1.1 keep-alive load: C connections (one thread each) GET a path for S seconds.
#define _GNU_SOURCE
// Prints "requests seconds p50_us p99_us errors". Responses must carry Content-Length.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES 4000000
static const char *host;
static int port;
static double seconds;
static char request[256];
static unsigned *latencies;  // us, all threads
static long n_latencies;
static long errors;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int connect_to(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
        close(fd);
        return -1;
    }
    return fd;
}

// One response: headers, then Content-Length bytes. 0 on success.
static int read_response(int fd)
{
    static __thread char buf[65536];
    long have = 0, need = -1;
    for (;;) {
        long got = read(fd, buf + have, sizeof(buf) - have);
        if (got <= 0)
            return -1;
        have += got;
        if (need < 0) {
            char *end = memmem(buf, have, "\r\n\r\n", 4);
            if (!end)
                continue;
            char *length = memmem(buf, end - buf, "Content-Length:", 15);
            if (!length)
                return -1;
            need = (end + 4 - buf) + atol(length + 15);
        }
        if (have >= need)
            return 0;
    }
}

static void *worker(void *unused)
{
    (void)unused;
    unsigned *mine = malloc(sizeof(unsigned) * (MAX_SAMPLES / 16));
    long count = 0, failed = 0;
    int fd = connect_to();
    double stop = now() + seconds;
    while (fd >= 0) {
        double sent = now();
        if (sent >= stop)
            break;
        if (write(fd, request, strlen(request)) <= 0 || read_response(fd)) {
            failed++;
            close(fd);
            fd = connect_to();
            continue;
        }
        if (count < MAX_SAMPLES / 16)
            mine[count++] = (unsigned)((now() - sent) * 1e6);
    }
    if (fd >= 0)
        close(fd);
    pthread_mutex_lock(&lock);
    memcpy(latencies + n_latencies, mine, count * sizeof(unsigned));
    n_latencies += count;
    errors += failed;
    pthread_mutex_unlock(&lock);
    free(mine);
    return 0;
}

static int by_value(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: httpload HOST PORT CONNECTIONS SECONDS\n");
        return 2;
    }
    host = argv[1];
    port = atoi(argv[2]);
    int connections = atoi(argv[3]);
    seconds = atof(argv[4]);
    if (connections < 1 || connections > 16) {
        fprintf(stderr, "httpload: 1..16 connections\n");
        return 2;
    }
    snprintf(request, sizeof(request), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host);
    latencies = malloc(sizeof(unsigned) * MAX_SAMPLES);
    pthread_t threads[16];
    double start = now();
    for (int i = 0; i < connections; i++)
        pthread_create(&threads[i], 0, worker, 0);
    for (int i = 0; i < connections; i++)
        pthread_join(threads[i], 0);
    double elapsed = now() - start;
    qsort(latencies, n_latencies, sizeof(unsigned), by_value);
    unsigned p50 = n_latencies ? latencies[n_latencies / 2] : 0;
    unsigned p99 = n_latencies ? latencies[(long)(n_latencies * 0.99)] : 0;
    printf("%ld %.3f %u %u %ld\n", n_latencies, elapsed, p50, p99, errors);
    return 0;
}
