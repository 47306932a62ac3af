/* The minimal NFQUEUE accept loop, in the shape of libnetfilter_queue's own example (nfqnl_test.c):
 * bind the queue, copy each packet, accept every packet. The baseline outgate is measured against.
 *   nfq_accept QUEUE     (runs until killed; prints the packet count on SIGTERM/SIGINT)
 * Build: cc -O2 -o nfq_accept nfq_accept.c -lnetfilter_queue
 */
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static unsigned long packets;

static void on_signal(int sig) { (void)sig; stop = 1; }

static int cb(struct nfq_q_handle *qh, struct nfgenmsg *nfmsg, struct nfq_data *nfa, void *data) {
    (void)nfmsg;
    (void)data;
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    unsigned char *payload;
    nfq_get_payload(nfa, &payload);
    packets++;
    return nfq_set_verdict(qh, ntohl(ph->packet_id), NF_ACCEPT, 0, NULL);
}

int main(int argc, char **argv) {
    int queue = argc > 1 ? atoi(argv[1]) : 0;
    struct nfq_handle *h = nfq_open();
    if (!h) { perror("nfq_open"); return 1; }
    struct nfq_q_handle *qh = nfq_create_queue(h, queue, &cb, NULL);
    if (!qh) { perror("nfq_create_queue"); return 1; }
    if (nfq_set_mode(qh, NFQNL_COPY_PACKET, 0xffff) < 0) { perror("nfq_set_mode"); return 1; }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int fd = nfq_fd(h);
    char buf[65536] __attribute__((aligned));
    fprintf(stderr, "bound queue %d\n", queue);
    while (!stop) {
        int rv = recv(fd, buf, sizeof buf, 0);
        if (rv >= 0)
            nfq_handle_packet(h, buf, rv);
    }
    printf("packets %lu\n", packets);
    nfq_destroy_queue(qh);
    nfq_close(h);
    return 0;
}
