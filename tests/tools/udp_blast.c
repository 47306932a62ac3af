/* UDP blast for the live tests and benchmarks: many flows, sendmmsg, and a counting receiver.
 *
 *   udp_blast send ADDR PORT FLOWS TOTAL PAYLOAD   sends TOTAL datagrams round-robin over FLOWS connected
 *                                                   sockets (one flow each), 64 per sendmmsg; prints
 *                                                   "sent N seconds S"
 *   udp_blast recv PORT IDLE_MS                     counts datagrams on PORT (IPv4 and IPv6) until IDLE_MS
 *                                                   pass without one after the first; prints "received N"
 * ADDR is IPv4 or IPv6. A sendmmsg that fails with ENOBUFS/EAGAIN is retried, so TOTAL leave the host.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define VLEN 64

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int send_blast(const char *addr, int port, int flows, long total, int payload) {
    struct sockaddr_storage dst;
    socklen_t dlen;
    memset(&dst, 0, sizeof dst);
    struct sockaddr_in *d4 = (struct sockaddr_in *)&dst;
    struct sockaddr_in6 *d6 = (struct sockaddr_in6 *)&dst;
    if (inet_pton(AF_INET, addr, &d4->sin_addr) == 1) {
        d4->sin_family = AF_INET;
        d4->sin_port = htons(port);
        dlen = sizeof *d4;
    } else if (inet_pton(AF_INET6, addr, &d6->sin6_addr) == 1) {
        d6->sin6_family = AF_INET6;
        d6->sin6_port = htons(port);
        dlen = sizeof *d6;
    } else {
        fprintf(stderr, "bad address %s\n", addr);
        return 2;
    }
    int *fds = calloc(flows, sizeof(int));
    for (int i = 0; i < flows; i++) {
        fds[i] = socket(dst.ss_family, SOCK_DGRAM, 0);
        if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&dst, dlen) < 0) {
            perror("socket/connect");
            return 1;
        }
    }
    static char buf[2048];
    memset(buf, 'x', sizeof buf);
    struct iovec iov[VLEN];
    struct mmsghdr msgs[VLEN];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < VLEN; i++) {
        iov[i].iov_base = buf;
        iov[i].iov_len = payload;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    long sent = 0, round = 0;
    double t0 = now();
    while (sent < total) {
        int n = total - sent < VLEN ? (int)(total - sent) : VLEN;
        int r = sendmmsg(fds[round++ % flows], msgs, n, 0);
        if (r < 0) {
            if (errno == ENOBUFS || errno == EAGAIN || errno == EPERM) {
                usleep(100); /* a full qdisc, or (EPERM) a queued packet dropped: retry */
                continue;
            }
            perror("sendmmsg");
            return 1;
        }
        sent += r;
    }
    printf("sent %ld seconds %.3f\n", sent, now() - t0);
    return 0;
}

static int recv_count(int port, int idle_ms) {
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    int off = 0, rb = 64 << 20;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rb, sizeof rb);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("bind");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    static char bufs[VLEN][2048];
    struct iovec iov[VLEN];
    struct mmsghdr msgs[VLEN];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < VLEN; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = sizeof bufs[i];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    long got = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (;;) {
        /* Before the first datagram wait long; after it, stop once the line is idle. */
        int r = poll(&p, 1, got ? idle_ms : 60000);
        if (r <= 0)
            break;
        int n = recvmmsg(fd, msgs, VLEN, MSG_DONTWAIT, NULL);
        if (n > 0)
            got += n;
    }
    printf("received %ld\n", got);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 7 && !strcmp(argv[1], "send"))
        return send_blast(argv[2], atoi(argv[3]), atoi(argv[4]), atol(argv[5]), atoi(argv[6]));
    if (argc == 4 && !strcmp(argv[1], "recv"))
        return recv_count(atoi(argv[2]), atoi(argv[3]));
    fprintf(stderr, "usage: udp_blast send ADDR PORT FLOWS TOTAL PAYLOAD | udp_blast recv PORT IDLE_MS\n");
    return 2;
}
